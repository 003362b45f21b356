package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"

	v1 "github.com/deployme/deployme/api/v1"
)

// RequestOptions are per-request choices the backend honours.
type RequestOptions struct {
	// Stale allows a read from this replica's local state (?stale=1) instead of a
	// linearizable one.
	Stale bool
	// IdempotencyKey is the client's Idempotency-Key, scoped by token: "<token id>/<key>".
	IdempotencyKey string
	// Fingerprint identifies the request (method, path, body), so a reused key with another
	// request is refused.
	Fingerprint string
}

type optionsKey struct{}

// OptionsFrom returns the request's options (zero when none were set).
func OptionsFrom(ctx context.Context) RequestOptions {
	o, _ := ctx.Value(optionsKey{}).(RequestOptions)
	return o
}

// WithOptions returns ctx carrying o.
func WithOptions(ctx context.Context, o RequestOptions) context.Context {
	return context.WithValue(ctx, optionsKey{}, o)
}

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

// requestOptions reads ?stale= (GET only; removed from the query so handlers never see it)
// and the Idempotency-Key header (POST, PATCH, DELETE).
func requestOptions(w http.ResponseWriter, r *http.Request, p *principal) (*http.Request, error) {
	var o RequestOptions
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil && q.Has("stale") && r.Method == http.MethodGet {
		if len(q["stale"]) > 1 {
			return r, v1.InvalidField("stale", "stale is given %d times", len(q["stale"]))
		}
		switch q.Get("stale") {
		case "1", "true":
			o.Stale = true
		case "0", "false":
		default:
			return r, v1.InvalidField("stale", "stale must be 1, true, 0 or false")
		}
		q.Del("stale")
		u := *r.URL
		u.RawQuery = q.Encode()
		r.URL = &u
		if o.Stale {
			w.Header().Set("X-Deployme-Read", "stale")
		}
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if r.Method == http.MethodGet {
			return r, v1.InvalidField("Idempotency-Key", "Idempotency-Key applies to POST, PATCH and DELETE only")
		}
		if len(key) > MaxIdempotencyKey || !printableASCII(key) {
			return r, v1.InvalidField("Idempotency-Key", "Idempotency-Key must be 1-%d printable ASCII characters", MaxIdempotencyKey)
		}
		body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes+1))
		if err != nil && len(body) <= MaxBodyBytes {
			return r, v1.Errorf(v1.CodeInvalidRequest, "cannot read request body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := sha256.New()
		io.WriteString(sum, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+"\n")
		sum.Write(body)
		o.IdempotencyKey = p.tok.ID + "/" + key
		o.Fingerprint = hex.EncodeToString(sum.Sum(nil))
	}
	return r.WithContext(WithOptions(r.Context(), o)), nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
