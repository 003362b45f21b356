package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

func (a *app) infraCmd() *cobra.Command {
	c := group("infra", "Manage infras: the host pools clusters are placed on",
		a.infraCreateCmd(),
		a.infraListCmd(),
		a.infraGetCmd(),
		a.deleteCmd("infra", "Delete an infra (it must have no hosts or clusters left)", "Infra %s deleted\n",
			func(cmd *cobra.Command, c *client.Client, id string) error { return c.DeleteInfra(cmd.Context(), id) }),
		a.infraJoinTokenCmd(),
	)
	c.Aliases = []string{"infras"}
	return c
}

// deleteCmd builds the "delete ID"-like commands whose answer is empty.
func (a *app) deleteCmd(use, short, done string, del func(*cobra.Command, *client.Client, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := del(cmd, c, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, done, args[0])
			return nil
		},
	}
}

func (a *app) infraCreateCmd() *cobra.Command {
	var kind, vipPool string
	cmd := &cobra.Command{
		Use:   "create NAME --kind onpremise|baremetal",
		Short: "Create an infra: a customer site or a bare-metal rack",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := v1.CreateInfraRequest{Name: &args[0], Kind: &kind}
			if cmd.Flags().Changed("vip-pool") {
				req.VIPPool = &vipPool
			}
			in, err := c.CreateInfra(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.render(in, func(tw io.Writer) { a.infraTable(tw, *in) })
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "onpremise (hosts running the agent) or baremetal (machines that PXE-boot)")
	cmd.Flags().StringVar(&vipPool, "vip-pool", "", "CIDR the control-plane virtual IPs are taken from, e.g. 10.20.0.240/28")
	_ = cmd.MarkFlagRequired("kind")
	return cmd
}

func (a *app) infraListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List infras, the built-in infra_managed included",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ListInfras(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(l, func(tw io.Writer) { a.infraTable(tw, l.Items...) })
		},
	}
}

func (a *app) infraTable(w io.Writer, items ...v1.Infra) {
	row(w, "ID", "NAME", "KIND", "VIP POOL", "AGE")
	for _, in := range items {
		row(w, in.ID, in.Name, in.Kind, in.VIPPool, a.age(in.CreatedAt))
	}
}

func (a *app) infraGetCmd() *cobra.Command {
	return showByID(a, "get ID", "Show an infra", (*client.Client).GetInfra, func(tw io.Writer, in *v1.Infra) {
		field(tw, "ID", in.ID)
		field(tw, "Name", in.Name)
		field(tw, "Kind", in.Kind)
		field(tw, "VIP pool", in.VIPPool)
		if n := in.Network; n != nil {
			field(tw, "Network", n.CIDR)
			field(tw, "Gateway", n.Gateway)
			field(tw, "DNS", strings.Join(n.DNS, ", "))
			if n.MTU > 0 {
				field(tw, "MTU", n.MTU)
			}
		}
		field(tw, "Created", a.timeAndAge(in.CreatedAt))
	})
}

func (a *app) infraJoinTokenCmd() *cobra.Command {
	var expires string
	var maxUses int
	cmd := &cobra.Command{
		Use:   "join-token ID",
		Short: "Create a join token for an infra's agents, and print the install command",
		Long: `Creates a join token that lets agents register hosts into the infra, and prints the
one-line command that installs and starts the agent on a host. The token is shown only once.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var req v1.CreateJoinTokenRequest
			if cmd.Flags().Changed("expires") {
				req.Expires = &expires
			}
			if cmd.Flags().Changed("max-uses") {
				req.MaxUses = &maxUses
			}
			jt, err := c.CreateJoinToken(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return a.render(jt, func(w io.Writer) {
				uses := "no use limit"
				if jt.MaxUses > 0 {
					uses = fmt.Sprintf("at most %d host(s)", jt.MaxUses)
				}
				fmt.Fprintf(w, "Join token %s for infra %s: expires %s (%s), %s.\n", jt.ID, jt.InfraID, a.until(jt.ExpiresAt), jt.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"), uses)
				fmt.Fprintf(w, "Run this on each host to install the agent (the token is shown only once):\n\n")
				fmt.Fprintf(w, "  %s\n", jt.Command)
			})
		},
	}
	cmd.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 30m, 24h, 7d (default 24h, at most 365d)")
	cmd.Flags().IntVar(&maxUses, "max-uses", 0, "how many hosts may register with it (default: no limit)")
	return cmd
}

func (a *app) hostCmd() *cobra.Command {
	c := group("host", "Inspect, accept and decommission the fleet's hosts",
		a.hostListCmd(),
		a.hostGetCmd(),
		a.hostAcceptCmd(),
		a.deleteCmd("decommission", "Take a host out of the fleet (it must not be a cluster's node)", "Host %s decommissioned\n",
			func(cmd *cobra.Command, c *client.Client, id string) error {
				return c.DecommissionHost(cmd.Context(), id)
			}),
	)
	c.Aliases = []string{"hosts"}
	return c
}

func (a *app) hostListCmd() *cobra.Command {
	var o client.ListOptions
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List hosts",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ListHosts(cmd.Context(), o)
			if err != nil {
				return err
			}
			return a.render(l, func(tw io.Writer) {
				row(tw, "ID", "HOSTNAME", "INFRA", "STATE", "CLUSTER", "CPUS", "MEMORY", "ADDRESS", "LAST SEEN", "AGE")
				for _, h := range l.Items {
					row(tw, h.ID, h.Hostname, h.InfraID, h.State, h.ClusterID, h.CPUs, bytesIEC(h.MemoryBytes), firstAddress(h), a.age(h.LastSeen), a.age(h.CreatedAt))
				}
				a.pageHint(l.Total, l.Page, l.PerPage, "hosts")
			})
		},
	}
	cmd.Flags().StringVar(&o.InfraID, "infra", "", "only hosts of this infra")
	cmd.Flags().StringVar(&o.State, "state", "", "only hosts in this state (discovered, available, assigned, offline, decommissioned)")
	addPageFlags(cmd, &o.Page, &o.PerPage)
	return cmd
}

// firstAddress is the address a host is best known by: the first one of its first
// interface that is up.
func firstAddress(h v1.Host) string {
	for _, n := range h.NICs {
		if n.Up && len(n.Addresses) > 0 {
			return n.Addresses[0]
		}
	}
	return ""
}

func (a *app) hostGetCmd() *cobra.Command {
	return showByID(a, "get ID", "Show a host and its inventory", (*client.Client).GetHost, func(tw io.Writer, h *v1.Host) { a.hostDetail(tw, *h) })
}

func (a *app) hostAcceptCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "accept ID",
		Short: "Make a discovered host available to clusters",
		Long: `Accepts a discovered host: hosts of a baremetal infra register as discovered, and no
cluster is placed on them until they are accepted. Accepting an accepted host changes nothing.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			h, err := c.AcceptHost(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.render(h, func(tw io.Writer) { a.hostDetail(tw, *h) })
		},
	}
}

func (a *app) hostDetail(w io.Writer, h v1.Host) {
	field(w, "ID", h.ID)
	field(w, "Hostname", h.Hostname)
	field(w, "Infra", h.InfraID)
	field(w, "State", h.State)
	field(w, "Cluster", h.ClusterID)
	field(w, "CPUs", h.CPUs)
	field(w, "Memory", bytesIEC(h.MemoryBytes))
	agent := h.AgentVersion
	if h.ConnectedTo != "" {
		agent += " (connected to " + h.ConnectedTo + ")"
	}
	field(w, "Agent", agent)
	labels := make([]string, 0, len(h.Labels))
	for k, v := range h.Labels {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	field(w, "Labels", strings.Join(labels, ", "))
	var disks, nics []string
	for _, d := range h.Disks {
		kind := "ssd"
		if d.Rotational {
			kind = "hdd"
		}
		disks = append(disks, strings.Join(nonEmpty(d.Name, bytesIEC(d.SizeBytes), kind, d.Serial), " "))
	}
	for _, n := range h.NICs {
		state := "down"
		if n.Up {
			state = "up"
		}
		speed := ""
		if n.SpeedMbps > 0 {
			speed = fmt.Sprintf("%dMb/s", n.SpeedMbps)
		}
		nics = append(nics, strings.Join(nonEmpty(n.Name, n.MAC, state, speed, strings.Join(n.Addresses, ",")), " "))
	}
	lines(w, "Disks", disks)
	lines(w, "NICs", nics)
	field(w, "Last seen", a.timeAndAge(h.LastSeen))
	field(w, "Created", a.timeAndAge(h.CreatedAt))
}

// lines writes a detail field with one value per line.
func lines(w io.Writer, name string, values []string) {
	if len(values) == 0 {
		field(w, name, "")
		return
	}
	for i, v := range values {
		if i == 0 {
			field(w, name, v)
			continue
		}
		fmt.Fprintf(w, "\t%s\n", v)
	}
}

func nonEmpty(s ...string) []string {
	return slices.DeleteFunc(s, func(x string) bool { return x == "" })
}
