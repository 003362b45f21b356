package rest

import (
	"net/http"
	"regexp"

	v1 "github.com/deployme/deployme/api/v1"
)

// sha256Hex is the one spelling of a hash the artifact routes answer to.
var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// artifact serves a Kubernetes binary by content (the coordinator's artifact store). The
// store answers 400 for a malformed hash and 404 for one it does not hold; the form is
// checked here too, so that a malformed request is a 400 whatever the coordinator's set-up.
func (h *Handler) artifact(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if q := newQuery(r.URL); q.err != nil {
		return q.err
	}
	if !sha256Hex.MatchString(r.PathValue("hex")) {
		return v1.InvalidField("hex", "%q is not a SHA-256: want 64 lowercase hex digits", r.PathValue("hex"))
	}
	if h.cfg.Artifacts == nil {
		return v1.Errorf(v1.CodeNotFound, "this coordinator has no Kubernetes artifact store (--kube-artifacts)")
	}
	h.cfg.Artifacts.ServeHTTP(w, r)
	return nil
}
