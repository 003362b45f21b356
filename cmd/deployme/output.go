package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/deployme/deployme/api/client"
)

// render prints obj, the API's own answer, as JSON or YAML, or calls table to write a
// human table (cells separated by tabs) that is aligned before it reaches stdout.
func (a *app) render(obj any, table func(w io.Writer)) error {
	format, err := a.outputFormat()
	if err != nil {
		return err
	}
	switch format {
	case "json":
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	tw := newTable(a.stdout)
	table(tw)
	return tw.Flush()
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
}

// row writes one table row.
func row(w io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
		if s[i] == "" {
			s[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}

// field writes one "Name: value" line of a detail view.
func field(w io.Writer, name string, value any) {
	s := fmt.Sprint(value)
	if s == "" {
		s = "-"
	}
	fmt.Fprintf(w, "%s:\t%s\n", name, s)
}

// age is how long ago t was, coarsely ("45s", "5m", "3h", "12d", "2y"), by the app's clock.
func (a *app) age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return shortDuration(a.now().Sub(t))
}

// until is how long until t ("in 89d"), or "expired".
func (a *app) until(t time.Time) string {
	d := t.Sub(a.now())
	if d <= 0 {
		return "expired"
	}
	return "in " + shortDuration(d)
}

// shortDuration keeps only the largest unit: enough to read a table at a glance.
func shortDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d < 0:
		// The coordinator's clock may be slightly ahead of ours.
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < day:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	case d < 365*day:
		return fmt.Sprintf("%dd", int(d/day))
	}
	return fmt.Sprintf("%dy", int(d/(365*day)))
}

// bytesIEC prints a size in binary units ("32Gi", "1.5Ti"), as Kubernetes writes quantities.
func bytesIEC(n int64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d%s", int64(f), units[i])
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// showByID is a command that fetches one object by its ID and renders it: as a table with
// table, or as JSON or YAML.
func showByID[T any](a *app, use, short string, get func(*client.Client, context.Context, string) (*T, error), table func(io.Writer, *T)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			v, err := get(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.render(v, func(tw io.Writer) { table(tw, v) })
		},
	}
}
