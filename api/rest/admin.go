package rest

import (
	"net/http"

	v1 "github.com/deployme/deployme/api/v1"
)

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	list, err := h.b.ListTokens(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var req v1.CreateTokenRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validateCreateToken(&req); err != nil {
		return err
	}
	t, err := h.b.CreateToken(r.Context(), &req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/tokens/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (h *Handler) getToken(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	t, err := h.b.GetToken(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := h.b.DeleteToken(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listInfras(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	list, err := h.b.ListInfras(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) createInfra(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var req v1.CreateInfraRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validateCreateInfra(&req); err != nil {
		return err
	}
	i, err := h.b.CreateInfra(r.Context(), &req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/infras/"+i.ID)
	writeJSON(w, http.StatusCreated, i)
	return nil
}

func (h *Handler) getInfra(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	i, err := h.b.GetInfra(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, i)
	return nil
}

func (h *Handler) deleteInfra(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := h.b.DeleteInfra(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listJoinTokens(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	list, err := h.b.ListJoinTokens(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) createJoinToken(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var req v1.CreateJoinTokenRequest
	// The body is optional: an empty one takes every default.
	if err := decodeOptionalBody(r, &req); err != nil {
		return err
	}
	ttl := DefaultJoinTTL
	if req.Expires != nil {
		d, err := ParseDuration("expires", *req.Expires, MaxJoinTTL)
		if err != nil {
			return err
		}
		ttl = d
	}
	uses := 0
	if req.MaxUses != nil {
		if *req.MaxUses < 1 || *req.MaxUses > 1_000_000 {
			return v1.InvalidField("max_uses", "max_uses must be between 1 and 1000000 (omit it for no limit)")
		}
		uses = *req.MaxUses
	}
	jt, err := h.b.CreateJoinToken(r.Context(), r.PathValue("id"), ttl, uses)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, jt)
	return nil
}

func (h *Handler) deleteJoinToken(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := h.b.DeleteJoinToken(r.Context(), r.PathValue("id"), r.PathValue("token_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listHosts(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q := newQuery(r.URL, "page", "per_page", "infra_id", "state")
	page, perPage := q.page()
	st := q.oneOf("state", validHostStates)
	infra := q.str("infra_id")
	if q.err != nil {
		return q.err
	}
	list, err := h.b.ListHosts(r.Context(), HostQuery{Page: page, PerPage: perPage, InfraID: infra, State: st})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) getHost(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	host, err := h.b.GetHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, host)
	return nil
}

func (h *Handler) deleteHost(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := h.b.DecommissionHost(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// acceptHost reads no body: the path names everything there is to decide. Its
// Idempotency-Key, like every write's, was read before the handler and travels in the context.
func (h *Handler) acceptHost(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	host, err := h.b.AcceptHost(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, host)
	return nil
}

func (h *Handler) listMembers(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	list, err := h.b.ListMembers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	var req v1.AddMemberRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.ID == "" || len(req.ID) > 128 || !printableASCII(req.ID) {
		return v1.InvalidField("id", "id must be 1-128 printable characters")
	}
	if req.RaftAddress == "" {
		return v1.InvalidField("raft_address", "raft_address is required")
	}
	m, err := h.b.AddMember(r.Context(), &req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	if err := h.b.RemoveMember(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setHostNetwork replaces the host's network with the body (its infra's template no longer
// applies to it); the service checks it as the agent will, naming the field.
func (h *Handler) setHostNetwork(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	var n v1.HostNetwork
	if err := decodeBody(r, &n); err != nil {
		return err
	}
	host, err := h.b.SetHostNetwork(r.Context(), r.PathValue("id"), &n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, host)
	return nil
}

// clearHostNetwork gives the host back its infra's template.
func (h *Handler) clearHostNetwork(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	host, err := h.b.SetHostNetwork(r.Context(), r.PathValue("id"), nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, host)
	return nil
}
