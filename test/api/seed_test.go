package api_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
)

// The seed reference's shapes (../shared/seed/000_899d6a633ee54611.txt), key for key.
var (
	// seedCreateBody is the seed's example body of POST /v1/clusters.
	seedCreateBody = `{"name":"production","control_planes":3,"workers":5,"node_size":"large","phase":"managed"}`
	// seedCreatedKeys are the keys of the seed's 201 example.
	seedCreatedKeys = []string{"id", "name", "status", "phase", "control_planes", "workers", "node_size", "created_at"}
	// seedListItemKeys are the keys of an item of the seed's list example: the full object.
	seedListItemKeys = []string{"id", "name", "status", "phase", "control_planes", "workers", "node_size",
		"node_count", "endpoint", "kubernetes_version", "created_at", "updated_at"}
	// clusterKeys is the full cluster of DESIGN.md section 5: the seed's full object plus
	// infra_id. A create answers with it too, so the seed's 201 keys are a subset.
	clusterKeys = append(slices.Clone(seedListItemKeys), "infra_id")
	// listKeys are the seed's list envelope.
	listKeys = []string{"items", "total", "page", "per_page"}
	// seedStatuses is the seed's table of statuses.
	seedStatuses = []string{"provisioning", "running", "scaling", "upgrading", "error", "deleting"}

	clusterIDRe = regexp.MustCompile(`^cls_[a-z0-9]+$`)
	// apiTimeRe is RFC 3339 in UTC with whole seconds, as the seed writes 2026-03-15T14:30:00Z.
	apiTimeRe  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)
	endpointRe = regexp.MustCompile(`^https://([^/:\s]+):6443$`)
)

const gib = int64(1) << 30

// seedEnv is one coordinator shared by the steps of TestSeedRoundTrip, with what the test
// expects it to hold: live clusters in creation order and each one's status.
type seedEnv struct {
	c       *clustertest.Cluster
	admin   *client.Client
	order   []string
	status  map[string]string
	version string // the default Kubernetes version
	other   string // an offered version that is not the default
}

// create posts a body that must be accepted and returns the answer both ways.
func (e *seedEnv) create(t *testing.T, body string) (map[string]any, v1.Cluster) {
	t.Helper()
	resp := send(t, e.admin, http.MethodPost, "/v1/clusters", body)
	if resp.Status != http.StatusCreated {
		t.Fatalf("POST /v1/clusters %s: %d %s", body, resp.Status, resp.Body)
	}
	m, c := checkCluster(t, resp)
	if got, want := resp.Header.Get("Location"), "/v1/clusters/"+c.ID; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	e.order = append(e.order, c.ID)
	e.status[c.ID] = c.Status
	return m, c
}

func (e *seedEnv) get(t *testing.T, id string) (map[string]any, v1.Cluster) {
	t.Helper()
	resp := send(t, e.admin, http.MethodGet, "/v1/clusters/"+id, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /v1/clusters/%s: %d %s", id, resp.Status, resp.Body)
	}
	return checkCluster(t, resp)
}

// setStatus puts a cluster in a status the way the reconciler will.
func (e *seedEnv) setStatus(t *testing.T, id, status string) {
	t.Helper()
	if err := e.c.Service().SetClusterStatus(t.Context(), id, status, ""); err != nil {
		t.Fatalf("set %s %s: %v", id, status, err)
	}
	e.status[id] = status
}

// list fetches one page and checks the envelope's exact keys.
func (e *seedEnv) list(t *testing.T, query string) (map[string]any, v1.ClusterList) {
	t.Helper()
	resp := send(t, e.admin, http.MethodGet, "/v1/clusters"+query, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /v1/clusters%s: %d %s", query, resp.Status, resp.Body)
	}
	m := objectOf(t, resp.Body)
	expectKeys(t, "list envelope", m, listKeys)
	items, ok := m["items"].([]any)
	if !ok {
		t.Fatalf("items is %T, want an array (never null): %s", m["items"], resp.Body)
	}
	for i, it := range items {
		obj, _ := it.(map[string]any)
		expectKeys(t, fmt.Sprintf("items[%d]", i), obj, clusterKeys)
	}
	return m, strict[v1.ClusterList](t, resp.Body)
}

// walk reads every page of a listing and returns the IDs in order, checking on each page
// that the total does not move and the page is as full as it should be.
func (e *seedEnv) walk(t *testing.T, filter string, perPage int) (ids []string, total int) {
	t.Helper()
	total = -1
	for page := 1; ; page++ {
		_, l := e.list(t, fmt.Sprintf("?page=%d&per_page=%d%s", page, perPage, filter))
		if l.Page != page || l.PerPage != perPage {
			t.Fatalf("page %d: echoed page %d per_page %d", page, l.Page, l.PerPage)
		}
		if total == -1 {
			total = l.Total
		} else if l.Total != total {
			t.Fatalf("page %d: total %d, was %d on page 1", page, l.Total, total)
		}
		if want := min(perPage, max(total-(page-1)*perPage, 0)); len(l.Items) != want {
			t.Fatalf("page %d of %d (per_page %d): %d items, want %d", page, total, perPage, len(l.Items), want)
		}
		for _, c := range l.Items {
			ids = append(ids, c.ID)
		}
		if len(l.Items) == 0 {
			return ids, total
		}
	}
}

func (e *seedEnv) live(status string) []string {
	var out []string
	for _, id := range e.order {
		if status == "" || e.status[id] == status {
			out = append(out, id)
		}
	}
	return out
}

// checkCluster reads a cluster answer as a map and as a struct and checks what holds for
// every cluster: exactly the contract's keys, the ID and time formats, the endpoint form.
func checkCluster(t *testing.T, resp *client.Response) (map[string]any, v1.Cluster) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	m := objectOf(t, resp.Body)
	// status_reason is left out: every status here is set without a reason.
	expectKeys(t, "cluster", m, clusterKeys)
	c := strict[v1.Cluster](t, resp.Body)
	if !clusterIDRe.MatchString(c.ID) {
		t.Errorf("id %q does not match %s", c.ID, clusterIDRe)
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if s, _ := m[k].(string); !apiTimeRe.MatchString(s) {
			t.Errorf("%s %q is not RFC 3339 UTC with whole seconds", k, m[k])
		}
	}
	if c.UpdatedAt.Before(c.CreatedAt) {
		t.Errorf("updated_at %s before created_at %s", c.UpdatedAt, c.CreatedAt)
	}
	if !endpointRe.MatchString(c.Endpoint) {
		t.Errorf("endpoint %q is not https://<host>:6443", c.Endpoint)
	}
	return m, c
}

// pick returns the named entries of m, to compare a few fields at once with cmp.Diff.
func pick(m map[string]any, names ...string) map[string]any {
	out := map[string]any{}
	for _, n := range names {
		if v, ok := m[n]; ok {
			out[n] = v
		}
	}
	return out
}

// initControlPlaneAddress is the address of the host holding a cluster's first control
// plane: the endpoint of a cluster whose infra has no VIP pool.
func (e *seedEnv) initControlPlaneAddress(t *testing.T, clusterID string) string {
	t.Helper()
	resp := send(t, e.admin, http.MethodGet, "/v1/clusters/"+clusterID+"/nodes", nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("nodes: %d %s", resp.Status, resp.Body)
	}
	for _, n := range strict[v1.NodeList](t, resp.Body).Items {
		if n.Role != "control-plane-init" {
			continue
		}
		resp := send(t, e.admin, http.MethodGet, "/v1/hosts/"+n.HostID, nil)
		h := strict[v1.Host](t, resp.Body)
		p, err := netip.ParsePrefix(h.NICs[0].Addresses[0])
		if err != nil {
			t.Fatalf("host %s address: %v", h.ID, err)
		}
		return p.Addr().String()
	}
	t.Fatalf("cluster %s has no control-plane-init node", clusterID)
	return ""
}

func (e *seedEnv) availableHosts(t *testing.T, infraID string) int {
	t.Helper()
	resp := send(t, e.admin, http.MethodGet, "/v1/hosts?state=available&infra_id="+infraID, nil)
	return strict[v1.HostList](t, resp.Body).Total
}

func TestSeedRoundTrip(t *testing.T) {
	c := start(t)
	e := &seedEnv{c: c, admin: c.Client(), status: map[string]string{}}

	// Hosts sized so best-fit placement keeps them apart: eleven of exactly "large" (eight
	// for the seed's cluster, three for scaling it to eight workers) and small ones for the
	// rest, which never reach for a large host while a small one is free.
	c.AddHosts(11, clustertest.HostSpec{CPUs: 4, MemoryBytes: 16 * gib})
	c.AddHosts(64, clustertest.HostSpec{CPUs: 2, MemoryBytes: 4 * gib})

	resp := send(t, e.admin, http.MethodGet, "/v1/kubernetes/versions", nil)
	for _, k := range strict[v1.KubernetesVersionList](t, resp.Body).Items {
		switch {
		case k.Default && e.version != "":
			t.Fatalf("two default versions: %s and %s", e.version, k.Version)
		case k.Default:
			e.version = k.Version
		default:
			e.other = k.Version
		}
	}
	if e.version == "" || e.other == "" {
		t.Fatalf("want a default and another offered version, got %s", resp.Body)
	}

	var seed string // the ID of the seed's cluster
	var seedObj map[string]any
	t.Run("create with the seed's body", func(t *testing.T) {
		before := time.Now().UTC().Truncate(time.Second)
		m, cl := e.create(t, seedCreateBody)
		after := time.Now().UTC()
		seed, seedObj = cl.ID, m
		if missing := slices.DeleteFunc(slices.Clone(seedCreatedKeys), func(k string) bool { _, ok := m[k]; return ok }); len(missing) > 0 {
			t.Errorf("the seed's 201 keys %v are missing", missing)
		}
		want := map[string]any{
			// The seed's 201 example, value for value.
			"name": "production", "status": "provisioning", "phase": "managed",
			"control_planes": 3.0, "workers": 5.0, "node_size": "large",
			// The rest of the full object: nothing has joined yet.
			"node_count": 0.0, "kubernetes_version": e.version, "infra_id": v1.ManagedInfraID,
		}
		if diff := cmp.Diff(want, pick(m, keys(want)...)); diff != "" {
			t.Errorf("created cluster (-want +got):\n%s", diff)
		}
		if cl.CreatedAt.Before(before) || cl.CreatedAt.After(after) {
			t.Errorf("created_at %s outside [%s, %s]", cl.CreatedAt, before, after)
		}
		if m["updated_at"] != m["created_at"] {
			t.Errorf("updated_at %v differs from created_at %v on a new cluster", m["updated_at"], m["created_at"])
		}
		// managed has no VIP pool: the endpoint is the first control plane's address.
		if want := "https://" + net.JoinHostPort(e.initControlPlaneAddress(t, cl.ID), "6443"); cl.Endpoint != want {
			t.Errorf("endpoint %q, want %q", cl.Endpoint, want)
		}
	})

	t.Run("get returns the full object", func(t *testing.T) {
		m, _ := e.get(t, seed)
		if diff := cmp.Diff(seedObj, m); diff != "" {
			t.Errorf("GET differs from the create answer (-create +get):\n%s", diff)
		}
	})

	var defaults string
	t.Run("defaults", func(t *testing.T) {
		m, cl := e.create(t, `{"name":"defaults","control_planes":1,"workers":1,"node_size":"small"}`)
		defaults = cl.ID
		want := map[string]any{"phase": "managed", "infra_id": v1.ManagedInfraID, "kubernetes_version": e.version, "status": "provisioning"}
		if diff := cmp.Diff(want, pick(m, keys(want)...)); diff != "" {
			t.Errorf("phase omitted (-want +got):\n%s", diff)
		}
		m, _ = e.create(t, `{"name":"older","control_planes":1,"workers":1,"node_size":"small","kubernetes_version":"`+e.other+`"}`)
		if m["kubernetes_version"] != e.other {
			t.Errorf("kubernetes_version %v, want the requested %s", m["kubernetes_version"], e.other)
		}
	})

	t.Run("list envelope and defaults", func(t *testing.T) {
		m, l := e.list(t, "")
		want := map[string]any{"page": 1.0, "per_page": 20.0, "total": float64(len(e.order))}
		if diff := cmp.Diff(want, pick(m, "page", "per_page", "total")); diff != "" {
			t.Errorf("envelope (-want +got):\n%s", diff)
		}
		var ids []string
		for _, it := range l.Items {
			ids = append(ids, it.ID)
		}
		if diff := cmp.Diff(e.live(""), ids); diff != "" {
			t.Errorf("items are not the clusters in creation order (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(seedObj, m["items"].([]any)[0]); diff != "" {
			t.Errorf("list item differs from GET (-get +list):\n%s", diff)
		}
	})

	t.Run("pagination pages", func(t *testing.T) {
		for i := range 25 {
			e.create(t, fmt.Sprintf(`{"name":"page-%02d","control_planes":1,"workers":1,"node_size":"small"}`, i))
		}
		ids, total := e.walk(t, "", 10)
		if total != len(e.order) {
			t.Errorf("total %d, want %d", total, len(e.order))
		}
		if diff := cmp.Diff(e.live(""), ids); diff != "" {
			t.Errorf("pages (per_page 10) are not every cluster once in creation order (-want +got):\n%s", diff)
		}
		again, _ := e.walk(t, "", 7)
		if diff := cmp.Diff(ids, again); diff != "" {
			t.Errorf("per_page 7 walks another order (-per_page 10 +per_page 7):\n%s", diff)
		}
		m, l := e.list(t, "?per_page=100")
		if len(l.Items) != len(e.order) || m["per_page"] != 100.0 {
			t.Errorf("per_page=100: %d items, per_page %v; want %d and 100", len(l.Items), m["per_page"], len(e.order))
		}
	})

	t.Run("status filter", func(t *testing.T) {
		// Spread the paged clusters over every status of the seed's table.
		for i, id := range e.order[len(e.order)-25:] {
			if s := seedStatuses[i%len(seedStatuses)]; s != v1.StatusProvisioning {
				e.setStatus(t, id, s)
			}
		}
		for _, s := range seedStatuses {
			want := e.live(s)
			if len(want) == 0 {
				t.Fatalf("no cluster is %s: the filter would be tested on nothing", s)
			}
			got, total := e.walk(t, "&status="+s, 2)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status=%s (-want +got):\n%s", s, diff)
			}
			if total != len(want) {
				t.Errorf("status=%s: total %d, want %d", s, total, len(want))
			}
			_, l := e.list(t, "?status="+s)
			for _, it := range l.Items {
				if it.Status != s {
					t.Errorf("status=%s listed %s, which is %s", s, it.ID, it.Status)
				}
			}
		}
	})

	t.Run("a running cluster lists as the seed's example", func(t *testing.T) {
		e.setStatus(t, seed, v1.StatusRunning)
		m, l := e.list(t, "?status=running&per_page=100")
		i := slices.IndexFunc(l.Items, func(c v1.Cluster) bool { return c.ID == seed })
		if i < 0 {
			t.Fatalf("%s is not listed as running", seed)
		}
		item := m["items"].([]any)[i].(map[string]any)
		expectKeys(t, "list item", item, append(slices.Clone(seedListItemKeys), "infra_id"))
		if item["status"] != "running" {
			t.Errorf("status %v, want running", item["status"])
		}
	})

	t.Run("patch workers on a running cluster", func(t *testing.T) {
		resp := send(t, e.admin, http.MethodPatch, "/v1/clusters/"+seed, `{"workers": 8}`)
		if resp.Status != http.StatusOK {
			t.Fatalf("PATCH: %d %s", resp.Status, resp.Body)
		}
		m, cl := checkCluster(t, resp)
		e.status[seed] = cl.Status
		want := map[string]any{"id": seed, "name": "production", "status": "scaling", "workers": 8.0,
			"control_planes": 3.0, "node_size": "large", "phase": "managed", "created_at": seedObj["created_at"]}
		if diff := cmp.Diff(want, pick(m, keys(want)...)); diff != "" {
			t.Errorf("patched cluster (-want +got):\n%s", diff)
		}
		got, _ := e.get(t, seed)
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("GET after PATCH (-patch +get):\n%s", diff)
		}
		if n := e.availableHosts(t, v1.ManagedInfraID); n != 64-2*27 {
			t.Errorf("%d managed hosts available, want %d: the three new workers must reserve large hosts", n, 64-2*27)
		}
	})

	t.Run("kubeconfig before the control plane is up", func(t *testing.T) {
		for _, id := range []string{seed, defaults} {
			resp := send(t, e.admin, http.MethodGet, "/v1/clusters/"+id+"/kubeconfig", nil)
			if resp.Status != http.StatusConflict || strict[v1.Error](t, resp.Body).Code != v1.CodeConflict {
				t.Errorf("kubeconfig of %s: %d %s, want 409 conflict", id, resp.Status, resp.Body)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		// "defaults" is provisioning and none of its nodes was installed: there is nothing
		// to reset, so DELETE releases its hosts and removes it at once (DESIGN.md: the
		// cluster is gone once every node is reset and its host released). A cluster with
		// installed nodes would stay listed as deleting until the reconciler reset them.
		free := e.availableHosts(t, v1.ManagedInfraID)
		resp := send(t, e.admin, http.MethodDelete, "/v1/clusters/"+defaults, nil)
		if resp.Status != http.StatusNoContent || len(resp.Body) != 0 {
			t.Fatalf("DELETE: %d %q, want 204 and no body", resp.Status, resp.Body)
		}
		e.order = slices.DeleteFunc(e.order, func(id string) bool { return id == defaults })
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			resp = send(t, e.admin, method, "/v1/clusters/"+defaults, nil)
			if resp.Status != http.StatusNotFound || strict[v1.Error](t, resp.Body).Code != v1.CodeNotFound {
				t.Errorf("%s after DELETE: %d %s, want 404 not_found", method, resp.Status, resp.Body)
			}
		}
		if ids, _ := e.walk(t, "", 100); !slices.Equal(ids, e.live("")) {
			t.Errorf("list after DELETE: %v, want %v", ids, e.live(""))
		}
		if got := e.availableHosts(t, v1.ManagedInfraID); got != free+2 {
			t.Errorf("%d managed hosts available after DELETE, want %d: its two hosts must be released", got, free+2)
		}
	})

	t.Run("onpremise and baremetal", func(t *testing.T) {
		infraKeys := []string{"id", "name", "kind", "network", "vip_pool", "created_at"}
		for _, tc := range []struct {
			phase, body string
			keys        []string
			// endpoint is the wanted endpoint; "" means the first control plane's address.
			endpoint string
		}{
			{phase: "onpremise", keys: infraKeys, endpoint: "https://10.20.0.1:6443",
				body: `{"name":"site-a","kind":"onpremise","network":{"cidr":"10.20.0.0/24","gateway":"10.20.0.254","dns":["10.20.0.2","10.20.0.3"],"mtu":9000},"vip_pool":"10.20.0.0/29"}`},
			{phase: "baremetal", keys: []string{"id", "name", "kind", "created_at"},
				body: `{"name":"rack-b","kind":"baremetal"}`},
		} {
			t.Run(tc.phase, func(t *testing.T) {
				resp := send(t, e.admin, http.MethodPost, "/v1/infras", tc.body)
				if resp.Status != http.StatusCreated {
					t.Fatalf("POST /v1/infras: %d %s", resp.Status, resp.Body)
				}
				infra := objectOf(t, resp.Body)
				expectKeys(t, "infra", infra, tc.keys)
				sent := objectOf(t, []byte(tc.body))
				if diff := cmp.Diff(sent, pick(infra, keys(sent)...)); diff != "" {
					t.Errorf("infra does not echo its request (-sent +got):\n%s", diff)
				}
				id := strict[v1.Infra](t, resp.Body).ID
				if got := objectOf(t, send(t, e.admin, http.MethodGet, "/v1/infras/"+id, nil).Body); !cmp.Equal(infra, got) {
					t.Errorf("GET /v1/infras/%s differs from the create answer:\n%s", id, cmp.Diff(infra, got))
				}
				c.AddHosts(2, clustertest.HostSpec{InfraID: id, CPUs: 2, MemoryBytes: 4 * gib})
				m, cl := e.create(t, fmt.Sprintf(`{"name":"on-%s","control_planes":1,"workers":1,"node_size":"small","phase":%q,"infra_id":%q}`, tc.phase, tc.phase, id))
				want := map[string]any{"phase": tc.phase, "infra_id": id, "status": "provisioning", "kubernetes_version": e.version}
				if diff := cmp.Diff(want, pick(m, keys(want)...)); diff != "" {
					t.Errorf("cluster (-want +got):\n%s", diff)
				}
				wantEndpoint := tc.endpoint
				if wantEndpoint == "" {
					wantEndpoint = "https://" + net.JoinHostPort(e.initControlPlaneAddress(t, cl.ID), "6443")
				}
				if cl.Endpoint != wantEndpoint {
					t.Errorf("endpoint %q, want %q", cl.Endpoint, wantEndpoint)
				}
				if n := e.availableHosts(t, id); n != 0 {
					t.Errorf("%d hosts of %s still available, want both reserved", n, id)
				}
			})
		}
	})
}
