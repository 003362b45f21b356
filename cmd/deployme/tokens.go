package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

func (a *app) tokenCmd() *cobra.Command {
	c := group("token", "Manage API tokens (admin)",
		a.tokenCreateCmd(),
		a.tokenListCmd(),
		a.tokenGetCmd(),
		a.deleteCmd("revoke", "Revoke an API token: it stops working at once", "Token %s revoked\n",
			func(cmd *cobra.Command, c *client.Client, id string) error { return c.RevokeToken(cmd.Context(), id) }),
	)
	c.Aliases = []string{"tokens"}
	return c
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var name, scope, expires, plan string
	var perms []string
	cmd := &cobra.Command{
		Use:   "create --name NAME --permissions read,write",
		Short: "Create an API token and print its secret, which is shown only once",
		Example: `  deployme token create --name ci-pipeline --permissions read,write --expires 90d
  deployme token create --name viewer --permissions read --scope cluster:cls_abc`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := v1.CreateTokenRequest{Name: &name, Permissions: &perms}
			f := cmd.Flags()
			if f.Changed("scope") {
				req.Scope = &scope
			}
			if f.Changed("expires") {
				req.Expires = &expires
			}
			if f.Changed("plan") {
				req.Plan = &plan
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.render(t, func(w io.Writer) {
				fmt.Fprintf(w, "Token %s (%q) created: permissions %s, scope %s, plan %s, expires %s.\n",
					t.ID, t.Name, strings.Join(t.Permissions, ","), t.Scope, t.Plan, a.expiry(t))
				fmt.Fprintf(w, "Its secret is shown only this once; store it now:\n\n  %s\n", t.Secret)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "what the token is for, e.g. ci-pipeline")
	f.StringSliceVar(&perms, "permissions", nil, "comma-separated: read, write, admin (write implies read, admin both)")
	f.StringVar(&scope, "scope", "", `what it reaches: "*" (default), "cluster:*" or "cluster:<id>"`)
	f.StringVar(&expires, "expires", "", "lifetime, e.g. 12h, 90d (default: never)")
	f.StringVar(&plan, "plan", "", "rate-limit plan: community, pro or enterprise (default: the coordinator's)")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("permissions")
	return cmd
}

// expiry is when a token expires, relative, or "never".
func (a *app) expiry(t *v1.Token) string {
	if t.ExpiresAt == nil {
		return "never"
	}
	return a.until(*t.ExpiresAt)
}

func (a *app) tokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List API tokens (never their secrets)",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(l, func(tw io.Writer) {
				row(tw, "ID", "NAME", "PERMISSIONS", "SCOPE", "PLAN", "EXPIRES", "AGE")
				for _, t := range l.Items {
					row(tw, t.ID, t.Name, strings.Join(t.Permissions, ","), t.Scope, t.Plan, a.expiry(&t), a.age(t.CreatedAt))
				}
			})
		},
	}
}

func (a *app) tokenGetCmd() *cobra.Command {
	return showByID(a, "get ID", "Show an API token (never its secret)", (*client.Client).GetToken, func(tw io.Writer, t *v1.Token) {
		field(tw, "ID", t.ID)
		field(tw, "Name", t.Name)
		field(tw, "Permissions", strings.Join(t.Permissions, ","))
		field(tw, "Scope", t.Scope)
		field(tw, "Plan", t.Plan)
		if t.ExpiresAt == nil {
			field(tw, "Expires", "never")
		} else {
			field(tw, "Expires", fmt.Sprintf("%s (%s)", t.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"), a.until(*t.ExpiresAt)))
		}
		field(tw, "Created", a.timeAndAge(t.CreatedAt))
	})
}
