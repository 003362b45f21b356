package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

func (a *app) coordinatorCmd() *cobra.Command {
	return group("coordinator", "Manage the coordinator's replicas (admin)",
		a.membersCmd(),
		a.memberJoinCmd(),
		a.memberRemoveCmd(),
	)
}

func (a *app) membersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the coordinator replicas and which one leads",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.Members(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(l, func(tw io.Writer) {
				row(tw, "ID", "ROLE", "VOTER", "REACHABLE", "RAFT", "HTTP", "GRPC", "LAST CONTACT")
				for _, m := range l.Items {
					row(tw, m.ID, m.Role, yesNo(m.Voter), yesNo(m.Reachable), m.RaftAddress, m.HTTPAddress, m.GRPCAddress, a.age(m.LastContact))
				}
			})
		},
	}
}

func (a *app) memberJoinCmd() *cobra.Command {
	var req v1.AddMemberRequest
	cmd := &cobra.Command{
		Use:   "join ID --raft-address HOST:PORT",
		Short: "Add a replica to the Raft configuration (as a non-voter until it has caught up)",
		Long: `Records a replica's addresses and adds it to the Raft configuration as a non-voter; the
leader promotes it to voter once it has caught up. A coordinator started with --join does
this by itself: this command is for adding a replica by hand.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req.ID = args[0]
			var m v1.Member
			if err := call(cmd.Context(), c, http.MethodPost, "/v1/coordinator/members", req, &m); err != nil {
				return err
			}
			return a.render(&m, func(tw io.Writer) {
				row(tw, "ID", "ROLE", "VOTER", "RAFT", "HTTP", "GRPC")
				row(tw, m.ID, m.Role, yesNo(m.Voter), m.RaftAddress, m.HTTPAddress, m.GRPCAddress)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.RaftAddress, "raft-address", "", "the replica's Raft address, HOST:PORT")
	f.StringVar(&req.HTTPAddress, "http-address", "", "the replica's REST API address, HOST:PORT")
	f.StringVar(&req.GRPCAddress, "grpc-address", "", "the replica's agent (gRPC) address, HOST:PORT")
	_ = cmd.MarkFlagRequired("raft-address")
	return cmd
}

func (a *app) memberRemoveCmd() *cobra.Command {
	cmd := a.deleteCmd("remove", "Remove a replica from the Raft configuration", "Replica %s removed\n",
		func(cmd *cobra.Command, c *client.Client, id string) error {
			return call(cmd.Context(), c, http.MethodDelete, "/v1/coordinator/members/"+url.PathEscape(id), nil, nil)
		})
	cmd.Aliases = []string{"leave"}
	return cmd
}

// call sends a request the typed client has no method for (adding and removing replicas)
// and turns an error answer into *client.APIError, exactly as the client's methods do.
func call(ctx context.Context, c *client.Client, method, path string, body, out any) error {
	resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if resp.Status >= 300 {
		e := &client.APIError{Status: resp.Status}
		if json.Unmarshal(resp.Body, &e.Body) != nil || e.Body.Code == "" {
			e.Body.Code, e.Body.Message = v1.CodeInternal, strings.TrimSpace(string(resp.Body))
		}
		return e
	}
	if out == nil || len(resp.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}
