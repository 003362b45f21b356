package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

func (a *app) clusterCmd() *cobra.Command {
	c := group("cluster", "Create, watch, scale, upgrade and delete Kubernetes clusters",
		a.clusterCreateCmd(),
		a.clusterListCmd(),
		a.clusterGetCmd(),
		a.clusterScaleCmd(),
		a.clusterSetSizeCmd(),
		a.clusterUpgradeCmd(),
		a.clusterDeleteCmd(),
		a.clusterKubeconfigCmd(),
		a.clusterNodesCmd(),
		a.clusterEventsCmd(),
		a.clusterWatchCmd(),
	)
	c.Aliases = []string{"clusters"}
	return c
}

// waitFlags are the flags of commands that can wait for the cluster to settle.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&w.wait, "wait", false, "wait until the cluster "+what+", showing each node's progress")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 30*time.Minute, "with --wait, give up after this long")
}

func (a *app) clusterCreateCmd() *cobra.Command {
	var (
		controlPlanes, workers                     int
		nodeSize, phase, infra, version, kubecfgTo string
		w                                          waitFlags
	)
	cmd := &cobra.Command{
		Use:   "create NAME --control-planes N --workers N --node-size SIZE",
		Short: "Create a cluster",
		Long: `Creates a cluster on free hosts of its infra. The answer comes at once, with status
provisioning; --wait (or --kubeconfig-out) then follows every node's steps until the cluster
is running, and fails with the reason if it ends in error.`,
		Example: `  deployme cluster create demo --control-planes 1 --workers 2 --node-size small --wait --kubeconfig-out demo.kubeconfig
  deployme cluster create edge --control-planes 3 --workers 5 --node-size large --phase onpremise --infra infra_abc`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := v1.CreateClusterRequest{Name: &args[0], ControlPlanes: &controlPlanes, Workers: &workers, NodeSize: &nodeSize}
			f := cmd.Flags()
			if f.Changed("phase") {
				req.Phase = &phase
			}
			if f.Changed("infra") {
				req.InfraID = &infra
			}
			if f.Changed("kubernetes-version") {
				req.KubernetesVersion = &version
			}
			cl, err := c.CreateCluster(cmd.Context(), req)
			if err != nil {
				return err
			}
			if !w.wait && kubecfgTo == "" {
				return a.render(cl, func(tw io.Writer) { a.clusterTable(tw, *cl) })
			}
			return a.waitRunning(cmd.Context(), c, cl, w.timeout, kubecfgTo)
		},
	}
	f := cmd.Flags()
	f.IntVar(&controlPlanes, "control-planes", 0, "number of control planes: 1 or 3")
	f.IntVar(&workers, "workers", 0, "number of workers (at least 1)")
	f.StringVar(&nodeSize, "node-size", "", "minimum size of each host: small, medium, large or xlarge")
	f.StringVar(&phase, "phase", "", "where the hosts come from: managed (default), onpremise or baremetal")
	f.StringVar(&infra, "infra", "", "infra ID to place the cluster on (required unless --phase is managed)")
	f.StringVar(&version, "kubernetes-version", "", "Kubernetes version, e.g. v1.37.2 (default: the coordinator's default)")
	f.StringVar(&kubecfgTo, "kubeconfig-out", "", "once running, write the admin kubeconfig to this file (implies --wait)")
	w.add(cmd, "is running")
	for _, name := range []string{"control-planes", "workers", "node-size"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// progressOut is where watch progress goes: stdout, unless stdout is reserved for a JSON or
// YAML document that scripts will parse.
func (a *app) progressOut() io.Writer {
	if f, _ := a.outputFormat(); f != "table" {
		return a.stderr
	}
	return a.stdout
}

// waitRunning follows a cluster until it runs, then writes its kubeconfig if asked.
func (a *app) waitRunning(ctx context.Context, c *client.Client, cl *v1.Cluster, timeout time.Duration, kubecfgTo string) error {
	out := a.progressOut()
	fmt.Fprintf(out, "Waiting for cluster %s (%s) to be running...\n", cl.Name, cl.ID)
	final, err := a.watchCluster(ctx, c, cl.ID, untilRunning, timeout, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Cluster %s (%s) is running: %d node(s), API server %s\n", final.Name, final.ID, final.NodeCount, final.Endpoint)
	if kubecfgTo != "" {
		data, err := c.Kubeconfig(ctx, final.ID, "")
		if err != nil {
			return err
		}
		if err := writeKubeconfig(kubecfgTo, data); err != nil {
			return err
		}
		fmt.Fprintf(out, "Kubeconfig written to %s\n", kubecfgTo)
	}
	if out != a.stdout {
		return a.render(final, nil)
	}
	return nil
}

func (a *app) clusterListCmd() *cobra.Command {
	var status string
	var page, perPage int
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List clusters",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ListClusters(cmd.Context(), client.ListOptions{Status: status, Page: page, PerPage: perPage})
			if err != nil {
				return err
			}
			return a.render(l, func(tw io.Writer) {
				a.clusterTable(tw, l.Items...)
				a.pageHint(l.Total, l.Page, l.PerPage, "clusters")
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only clusters with this status (provisioning, running, scaling, upgrading, error, deleting)")
	addPageFlags(cmd, &page, &perPage)
	return cmd
}

func addPageFlags(cmd *cobra.Command, page, perPage *int) {
	cmd.Flags().IntVar(page, "page", 0, "page to show, from 1 (default 1)")
	cmd.Flags().IntVar(perPage, "per-page", 0, "items per page, at most 100 (default 20)")
}

// pageHint tells, on stderr so that stdout stays a clean table, that there is more.
func (a *app) pageHint(total, page, perPage int, what string) {
	if perPage <= 0 || total <= page*perPage {
		return
	}
	pages := (total + perPage - 1) / perPage
	fmt.Fprintf(a.stderr, "page %d of %d (%d %s); next: --page %d\n", page, pages, total, what, page+1)
}

func (a *app) clusterTable(w io.Writer, items ...v1.Cluster) {
	row(w, "ID", "NAME", "STATUS", "CP", "WORKERS", "SIZE", "NODES", "VERSION", "AGE")
	for _, c := range items {
		row(w, c.ID, c.Name, c.Status, c.ControlPlanes, c.Workers, c.NodeSize, c.NodeCount, c.KubernetesVersion, a.age(c.CreatedAt))
	}
}

func (a *app) clusterDetail(w io.Writer, c v1.Cluster) {
	field(w, "ID", c.ID)
	field(w, "Name", c.Name)
	field(w, "Status", c.Status)
	if c.StatusReason != "" {
		field(w, "Reason", c.StatusReason)
	}
	field(w, "Phase", c.Phase)
	field(w, "Infra", c.InfraID)
	field(w, "Control planes", c.ControlPlanes)
	field(w, "Workers", c.Workers)
	field(w, "Node size", c.NodeSize)
	field(w, "Nodes joined", c.NodeCount)
	field(w, "Kubernetes", c.KubernetesVersion)
	field(w, "Endpoint", c.Endpoint)
	field(w, "Created", a.timeAndAge(c.CreatedAt))
	field(w, "Updated", a.timeAndAge(c.UpdatedAt))
}

func (a *app) timeAndAge(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), a.age(t))
}

func (a *app) clusterGetCmd() *cobra.Command {
	return showByID(a, "get ID", "Show a cluster", (*client.Client).GetCluster, func(tw io.Writer, cl *v1.Cluster) { a.clusterDetail(tw, *cl) })
}

// clusterChangeCmd builds scale, set-size and upgrade: one required flag, one change, the
// cluster as the answer, and optionally a wait until the operation is over.
func (a *app) clusterChangeCmd(use, short, flag string, addFlag func(*cobra.Command), change func(ctx context.Context, c *client.Client, id string) (*v1.Cluster, error)) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cl, err := change(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if w.wait {
				return a.waitRunning(cmd.Context(), c, cl, w.timeout, "")
			}
			return a.render(cl, func(tw io.Writer) { a.clusterTable(tw, *cl) })
		},
	}
	addFlag(cmd)
	_ = cmd.MarkFlagRequired(flag)
	w.add(cmd, "is running again")
	return cmd
}

func (a *app) clusterScaleCmd() *cobra.Command {
	var workers int
	return a.clusterChangeCmd("scale ID --workers N", "Change a cluster's number of workers", "workers",
		func(cmd *cobra.Command) { cmd.Flags().IntVar(&workers, "workers", 0, "the new number of workers") },
		func(ctx context.Context, c *client.Client, id string) (*v1.Cluster, error) {
			return c.PatchCluster(ctx, id, v1.PatchClusterRequest{Workers: &workers})
		})
}

func (a *app) clusterSetSizeCmd() *cobra.Command {
	var size string
	return a.clusterChangeCmd("set-size ID --node-size SIZE", "Move a cluster to hosts of another size, one host at a time", "node-size",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&size, "node-size", "", "the new node size: small, medium, large or xlarge")
		},
		func(ctx context.Context, c *client.Client, id string) (*v1.Cluster, error) {
			return c.PatchCluster(ctx, id, v1.PatchClusterRequest{NodeSize: &size})
		})
}

func (a *app) clusterUpgradeCmd() *cobra.Command {
	var version string
	return a.clusterChangeCmd("upgrade ID --kubernetes-version VERSION", "Upgrade a cluster's Kubernetes (a newer patch, or the next minor)", "kubernetes-version",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&version, "kubernetes-version", "", "target version, e.g. v1.37.2")
		},
		func(ctx context.Context, c *client.Client, id string) (*v1.Cluster, error) {
			return c.UpgradeCluster(ctx, id, version)
		})
}

func (a *app) clusterDeleteCmd() *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a cluster: every node is reset and its host released",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteCluster(cmd.Context(), args[0]); err != nil {
				return err
			}
			out := a.progressOut()
			if !w.wait {
				fmt.Fprintf(out, "Cluster %s is being deleted\n", args[0])
				return nil
			}
			fmt.Fprintf(out, "Cluster %s is being deleted; waiting until it is gone...\n", args[0])
			if _, err := a.watchCluster(cmd.Context(), c, args[0], untilGone, w.timeout, out); err != nil {
				return err
			}
			fmt.Fprintf(out, "Cluster %s deleted\n", args[0])
			return nil
		},
	}
	w.add(cmd, "is gone")
	return cmd
}

func (a *app) clusterKubeconfigCmd() *cobra.Command {
	var ttl, file string
	var merge bool
	cmd := &cobra.Command{
		Use:   "kubeconfig ID",
		Short: "Get a cluster's admin kubeconfig",
		Long: `Prints a cluster's admin kubeconfig (its client certificate is valid for --ttl), or writes it
to a file with -f, or merges it with --merge into $KUBECONFIG (the first of its files that
exists, else the last) or ~/.kube/config: a cluster and a context named after the cluster and
a user "<name>-admin" are added or replaced, and the context becomes the current one. Files
are written readable by their owner only.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" && merge {
				return usageErrorf("-f/--file and --merge cannot be used together")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.Kubeconfig(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}
			switch {
			case file != "":
				if err := writeKubeconfig(file, data); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "Kubeconfig written to %s\n", file)
			case merge:
				cl, err := c.GetCluster(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				path, err := defaultKubeconfigPath(a.env)
				if err != nil {
					return err
				}
				if err := mergeKubeconfig(path, cl.Name, data); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "Cluster %s merged into %s; current context is now %q\n", cl.Name, path, cl.Name)
			default:
				_, err = a.stdout.Write(data)
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ttl, "ttl", "", "lifetime of the client certificate, e.g. 24h, 30d (default and maximum 365d)")
	f.StringVarP(&file, "file", "f", "", "write the kubeconfig to this file")
	f.BoolVar(&merge, "merge", false, "merge into $KUBECONFIG or ~/.kube/config and make it the current context")
	return cmd
}

func (a *app) clusterNodesCmd() *cobra.Command {
	return showByID(a, "nodes ID", "List a cluster's nodes and where each is in its steps", (*client.Client).ClusterNodes, func(tw io.Writer, l *v1.NodeList) {
		row(tw, "HOSTNAME", "ROLE", "STATE", "STEP", "STEPS", "HOST", "AGE")
		for _, n := range l.Items {
			done, total := stepCounts(n)
			row(tw, n.Hostname, n.Role, n.State, stepProgress(n), fmt.Sprintf("%d/%d", done, total), n.HostID, a.age(n.CreatedAt))
		}
	})
}

func (a *app) clusterWatchCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a cluster's nodes until it is running (or gone, when it is being deleted)",
		Long: `Shows every node's current step until the cluster is running, or until it is gone when it
is being deleted. On a terminal, a progress bar of the steps done is redrawn in place;
otherwise one line is printed each time something changes. Exits 1 if the cluster ends in
error, with the reason.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cl, err := c.GetCluster(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			goal := untilRunning
			if cl.Status == v1.StatusDeleting {
				goal = untilGone
			}
			out := a.progressOut()
			final, err := a.watchCluster(cmd.Context(), c, cl.ID, goal, timeout, out)
			if err != nil {
				return err
			}
			if final == nil {
				fmt.Fprintf(out, "Cluster %s (%s) deleted\n", cl.Name, cl.ID)
				return nil
			}
			fmt.Fprintf(out, "Cluster %s (%s) is running: %d node(s), API server %s\n", final.Name, final.ID, final.NodeCount, final.Endpoint)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default: never)")
	return cmd
}
