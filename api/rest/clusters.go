package rest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"

	"github.com/deployme/deployme/api"
	v1 "github.com/deployme/deployme/api/v1"
)

func notFoundCluster(id string) error {
	return v1.Errorf(v1.CodeNotFound, "cluster %s not found", id)
}

// visible hides clusters outside a token's scope behind the same 404 as a missing one, so
// a scoped token cannot learn which IDs exist.
func visible(p *principal, id string) error {
	if !p.seesCluster(id) {
		return notFoundCluster(id)
	}
	return nil
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := h.b.Ready(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (h *Handler) metrics(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if h.cfg.Metrics == nil {
		return v1.Errorf(v1.CodeNotFound, "metrics are not enabled")
	}
	h.cfg.Metrics.ServeHTTP(w, r)
	return nil
}

func (h *Handler) openapi(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	body, err := api.SpecJSON()
	if err != nil {
		return fmt.Errorf("openapi spec: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return nil
}

func (h *Handler) versions(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v1.KubernetesVersionList{Items: h.b.Catalog().KubernetesVersions})
	return nil
}

func (h *Handler) listClusters(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := newQuery(r.URL, "page", "per_page", "status")
	page, perPage := q.page()
	status := q.oneOf("status", validStatus)
	if q.err != nil {
		return q.err
	}
	list, err := h.b.ListClusters(r.Context(), ClusterQuery{Page: page, PerPage: perPage, Status: status, OnlyID: p.onlyCluster()})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) createCluster(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req v1.CreateClusterRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validateCreateCluster(&req, h.b.Catalog()); err != nil {
		return err
	}
	if p.onlyCluster() != "" {
		return v1.Errorf(v1.CodeForbidden, "a token scoped to one cluster cannot create clusters")
	}
	c, err := h.b.CreateCluster(r.Context(), &req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/clusters/"+c.ID)
	writeJSON(w, http.StatusCreated, c)
	return nil
}

func (h *Handler) getCluster(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := visible(p, id); err != nil {
		return err
	}
	c, err := h.b.GetCluster(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (h *Handler) patchCluster(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	id := r.PathValue("id")
	var req v1.PatchClusterRequest
	if err := decodePatch(r, &req); err != nil {
		return err
	}
	if err := validatePatchCluster(&req, h.b.Catalog()); err != nil {
		return err
	}
	if err := visible(p, id); err != nil {
		return err
	}
	c, err := h.b.PatchCluster(r.Context(), id, &req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

// decodePatch names a known-but-immutable field as such rather than as unknown.
func decodePatch(r *http.Request, req *v1.PatchClusterRequest) error {
	err := decodeBody(r, req)
	if e, ok := err.(*v1.Error); ok && e.Details["field"] != nil {
		field, _ := e.Details["field"].(string)
		// A patchable field named here is wrongly typed, not immutable: keep that error.
		if jsonFields(typeOfCreate)[field] != nil && jsonFields(typeOfPatch)[field] == nil {
			return v1.InvalidField(field, "%s cannot be changed after creation; only workers and node_size can", field)
		}
	}
	return err
}

var (
	typeOfCreate = reflect.TypeOf(v1.CreateClusterRequest{})
	typeOfPatch  = reflect.TypeOf(v1.PatchClusterRequest{})
)

func (h *Handler) deleteCluster(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := visible(p, id); err != nil {
		return err
	}
	if err := h.b.DeleteCluster(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) upgradeCluster(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	var req v1.UpgradeClusterRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validateUpgrade(&req, h.b.Catalog()); err != nil {
		return err
	}
	if err := visible(p, id); err != nil {
		return err
	}
	c, err := h.b.UpgradeCluster(r.Context(), id, *req.KubernetesVersion)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, c)
	return nil
}

func (h *Handler) kubeconfig(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	q := newQuery(r.URL, "ttl")
	if q.err != nil {
		return q.err
	}
	ttl := DefaultKubeconfigTTL
	if s := q.str("ttl"); s != "" {
		d, err := ParseDuration("ttl", s, MaxKubeconfigTTL)
		if err != nil {
			return err
		}
		ttl = d
	}
	if err := visible(p, id); err != nil {
		return err
	}
	body, err := h.b.Kubeconfig(r.Context(), id, ttl)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Disposition", `attachment; filename="kubeconfig.yaml"`)
	_, _ = w.Write(body)
	return nil
}

func (h *Handler) clusterNodes(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := visible(p, id); err != nil {
		return err
	}
	nodes, err := h.b.ClusterNodes(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nodes)
	return nil
}

func (h *Handler) clusterEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	q := newQuery(r.URL, "since", "follow")
	since := uint64(q.int("since", 0, 0, 1<<62))
	follow := q.oneOf("follow", []string{"0", "1", "true", "false"})
	if q.err != nil {
		return q.err
	}
	streaming := follow == "1" || follow == "true"
	// A reconnecting EventSource sends the last id it saw; it wins over ?since. It is read
	// before the scope check so that a malformed one is 400 whatever the cluster.
	if last := r.Header.Get("Last-Event-ID"); streaming && last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return v1.InvalidField("Last-Event-ID", "Last-Event-ID must be an event seq")
		}
		since = n
	}
	if err := visible(p, id); err != nil {
		return err
	}
	if !streaming {
		ctx := r.Context()
		events, err := h.b.ClusterEvents(ctx, id, since, false)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, events)
		return nil
	}
	ctx := r.Context()
	if h.cfg.Stopping != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(h.cfg.Stopping, cancel)()
	}
	// Check the cluster exists before committing to a stream.
	first, err := h.b.ClusterEvents(ctx, id, since, false)
	if err != nil {
		return err
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(events []v1.Event) {
		for _, e := range events {
			data, _ := json.Marshal(e)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, data)
			since = e.Seq
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	send(first.Items)
	for {
		// The backend's wait returns an empty list after a while; that is the keepalive tick.
		events, err := h.b.ClusterEvents(ctx, id, since, true)
		if err != nil {
			// The stream is open: the client sees it end and reconnects with Last-Event-ID.
			return nil
		}
		if len(events.Items) > 0 {
			send(events.Items)
			continue
		}
		fmt.Fprint(w, ": keepalive\n\n")
		if flusher != nil {
			flusher.Flush()
		}
	}
}
