package service

import (
	"context"
	"crypto/subtle"
	"slices"
	"strings"
	"time"

	"github.com/deployme/deployme/api/rest"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/command"
	"github.com/deployme/deployme/coordinator/state"
	raftcmdv1 "github.com/deployme/deployme/proto/raftcmd/v1"
)

// TokenPrefix starts every API token secret.
const TokenPrefix = "dpl_"

// Authenticate resolves a bearer secret to its token. Expired and unknown secrets are both
// 401; the message says which, as it helps the owner and tells an attacker nothing new.
func (s *Service) Authenticate(ctx context.Context, secret string) (*v1.Token, error) {
	hash := HashSecret(secret)
	var tok *state.Token
	lookup := func() {
		s.store.Read(func(st *state.State) {
			if t, ok := st.TokenByHash(hash); ok {
				tok = t
			}
		})
	}
	// Local first: authentication must not cost a round trip to the leader. A miss may be
	// a token created a moment ago through another replica, so look again once caught up.
	if lookup(); tok == nil && !rest.OptionsFrom(ctx).Stale {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		if s.linearize(lctx) == nil {
			lookup()
		}
		cancel()
	}
	if tok == nil || subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hash)) != 1 {
		return nil, v1.Errorf(v1.CodeUnauthorized, "invalid or revoked token")
	}
	if tok.ExpiresAt != nil && !s.now().Before(*tok.ExpiresAt) {
		return nil, v1.Errorf(v1.CodeUnauthorized, "token %s expired at %s", tok.ID, tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	out := tokenOut(tok)
	return &out, nil
}

// Bootstrap creates the first admin token (from its secret) and the managed infra, once.
// It is safe to call on every start: an already bootstrapped state is left alone.
func (s *Service) Bootstrap(ctx context.Context, adminSecret string) error {
	done := false
	s.store.Read(func(st *state.State) { done = st.Bootstrapped() })
	if done {
		return nil
	}
	id, err := s.newID("tok_")
	if err != nil {
		return err
	}
	now := s.now()
	_, err = s.apply(ctx, command.TypeBootstrap, &raftcmdv1.Bootstrap{
		AdminToken: &raftcmdv1.Token{
			Id: id, Name: "bootstrap-admin", Hash: HashSecret(adminSecret),
			Permissions: []string{v1.PermRead, v1.PermWrite, v1.PermAdmin},
			Scope:       "*", Plan: v1.PlanEnterprise, CreatedAt: unixNano(now),
		},
		ManagedInfra: &raftcmdv1.Infra{Id: v1.ManagedInfraID, Name: "managed", Kind: "managed", CreatedAt: unixNano(now)},
	}, "")
	if e, ok := err.(*v1.Error); ok && e.Code == v1.CodeConflict {
		return nil // bootstrapped concurrently: same outcome
	}
	return err
}

// NewAdminSecret returns a fresh secret for the bootstrap admin token.
func (s *Service) NewAdminSecret() (string, error) { return s.newSecret(TokenPrefix) }

// CreateToken creates an API token; the answer is the only time its secret is shown.
func (s *Service) CreateToken(ctx context.Context, req *v1.CreateTokenRequest) (*v1.Token, error) {
	scope := "*"
	if req.Scope != nil {
		scope = *req.Scope
	}
	if id, ok := strings.CutPrefix(scope, "cluster:"); ok && id != "*" {
		exists := false
		s.store.Read(func(st *state.State) { _, exists = st.Cluster(id) })
		if !exists {
			return nil, v1.InvalidField("scope", "cluster %s does not exist", id)
		}
	}
	plan := s.cfg.DefaultPlan
	if req.Plan != nil {
		plan = *req.Plan
	}
	perms := slices.Clone(*req.Permissions)
	slices.Sort(perms)
	perms = slices.Compact(perms)
	id, err := s.newID("tok_")
	if err != nil {
		return nil, err
	}
	secret, err := s.newSecret(TokenPrefix)
	if err != nil {
		return nil, err
	}
	now := s.now()
	pt := &raftcmdv1.Token{Id: id, Name: *req.Name, Hash: HashSecret(secret), Permissions: perms, Scope: scope, Plan: plan, CreatedAt: unixNano(now)}
	if req.Expires != nil {
		d, err := rest.ParseDuration("expires", *req.Expires, rest.MaxTokenTTL)
		if err != nil {
			return nil, err
		}
		pt.ExpiresAt = unixNano(now.Add(d))
	}
	a, err := s.apply(ctx, command.TypeCreateToken, &raftcmdv1.CreateToken{Token: pt}, id)
	if err != nil {
		return nil, err
	}
	first := a.ID
	var out *v1.Token
	if t, ok := a.Value.(*state.Token); ok && t.ID == first {
		o := tokenOut(t)
		out = &o
	} else if out, err = written(s.localToken(first)); err != nil {
		return nil, err
	}
	if first == id {
		// An idempotent retry gets the token without its secret: the secret was shown once,
		// in the first answer, and is stored nowhere it could be shown from again.
		out.Secret = secret
	}
	return out, nil
}

// ListTokens lists tokens without their secrets.
func (s *Service) ListTokens(ctx context.Context) (*v1.TokenList, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	out := &v1.TokenList{Items: []v1.Token{}}
	s.store.Read(func(st *state.State) {
		for _, t := range st.Tokens() {
			out.Items = append(out.Items, tokenOut(t))
		}
	})
	return out, nil
}

// GetToken returns one token without its secret.
func (s *Service) GetToken(ctx context.Context, id string) (*v1.Token, error) {
	if err := s.linearize(ctx); err != nil {
		return nil, err
	}
	return s.localToken(id)
}

func (s *Service) localToken(id string) (*v1.Token, error) {
	var out *v1.Token
	s.store.Read(func(st *state.State) {
		if t, ok := st.Token(id); ok {
			o := tokenOut(t)
			out = &o
		}
	})
	if out == nil {
		return nil, v1.Errorf(v1.CodeNotFound, "token %s not found", id)
	}
	return out, nil
}

// DeleteToken revokes a token.
func (s *Service) DeleteToken(ctx context.Context, id string) error {
	if !s.exists(ctx, func(st *state.State) bool { _, ok := st.Token(id); return ok }) {
		return v1.Errorf(v1.CodeNotFound, "token %s not found", id)
	}
	_, err := s.apply(ctx, command.TypeDeleteToken, &raftcmdv1.DeleteToken{Id: id}, "")
	return err
}
