package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
)

func (a *app) clusterEventsCmd() *cobra.Command {
	var since uint64
	var follow bool
	cmd := &cobra.Command{
		Use:   "events ID",
		Short: "Show a cluster's events: its operations and every node's steps",
		Long: `Shows a cluster's events in order. With --follow, new events are printed as they come
until the cluster is gone or the command is interrupted; then -o json prints one JSON object
per line and -o yaml one YAML document per event.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			hosts := hostNames{c: c, cluster: args[0]}
			l, err := c.ClusterEvents(cmd.Context(), args[0], since)
			if err != nil {
				return err
			}
			if !follow {
				hosts.learn(cmd.Context(), l.Items)
				return a.render(l, func(tw io.Writer) {
					row(tw, "SEQ", "AGE", "TYPE", "HOST", "MESSAGE")
					for _, e := range l.Items {
						row(tw, e.Seq, a.age(e.Time), e.Type, hosts.name(e.HostID), e.Message)
					}
				})
			}
			return a.followEvents(cmd.Context(), c, args[0], l.Items, since, &hosts)
		},
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "only events after this sequence number")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	return cmd
}

// followEvents prints first, then polls for newer events every pollInterval. It polls the
// JSON list with ?since= rather than holding the event stream open: the client reads whole
// answers, and a poll resumes by itself across a coordinator restart or failover.
func (a *app) followEvents(ctx context.Context, c *client.Client, id string, first []v1.Event, since uint64, hosts *hostNames) error {
	format, err := a.outputFormat()
	if err != nil {
		return err
	}
	header := format == "table"
	emit := func(events []v1.Event) error {
		hosts.learn(ctx, events)
		for _, e := range events {
			since = max(since, e.Seq)
		}
		switch format {
		case "json":
			for _, e := range events {
				b, err := json.Marshal(e)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s\n", b)
			}
		case "yaml":
			for _, e := range events {
				b, err := yaml.Marshal(e)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "---\n%s", b)
			}
		default:
			// Each batch is aligned on its own: a stream cannot know its widest cell.
			tw := newTable(a.stdout)
			if header {
				row(tw, "SEQ", "AGE", "TYPE", "HOST", "MESSAGE")
				header = false
			}
			for _, e := range events {
				row(tw, e.Seq, a.age(e.Time), e.Type, hosts.name(e.HostID), e.Message)
			}
			return tw.Flush()
		}
		return nil
	}
	if err := emit(first); err != nil {
		return err
	}
	tick := time.NewTicker(a.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Following ends with an interrupt: that is how the user stops it.
			return nil
		case <-tick.C:
		}
		l, err := c.ClusterEvents(ctx, id, since)
		switch {
		case ctx.Err() != nil:
			return nil
		case client.Code(err) == v1.CodeNotFound:
			fmt.Fprintf(a.stderr, "cluster %s is gone\n", id)
			return nil
		case err != nil && transient(err):
			continue
		case err != nil:
			return err
		}
		if len(l.Items) > 0 {
			if err := emit(l.Items); err != nil {
				return err
			}
		}
	}
}

// hostNames maps the host IDs of events to hostnames, from the cluster's nodes: a host ID
// tells a reader little. Hosts no longer in the cluster keep their ID.
type hostNames struct {
	c       *client.Client
	cluster string
	names   map[string]string
}

// learn looks the cluster's nodes up again when an event names a host not seen yet.
func (h *hostNames) learn(ctx context.Context, events []v1.Event) {
	for _, e := range events {
		if _, ok := h.names[e.HostID]; e.HostID == "" || ok {
			continue
		}
		if h.names == nil {
			h.names = map[string]string{}
		}
		nodes, err := h.c.ClusterNodes(ctx, h.cluster)
		if err == nil {
			for _, n := range nodes.Items {
				h.names[n.HostID] = n.Hostname
			}
		}
		if _, ok := h.names[e.HostID]; !ok {
			h.names[e.HostID] = e.HostID // not a node (any more): don't ask again
		}
	}
}

func (h *hostNames) name(hostID string) string {
	if n, ok := h.names[hostID]; ok {
		return n
	}
	return hostID
}
