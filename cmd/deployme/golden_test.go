package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/service"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// cli runs the CLI in-process against one API with a clock and no terminal, as tests need.
type cli struct {
	env   map[string]string
	now   func() time.Time
	term  bool
	width int
}

type result struct {
	stdout, stderr string
	code           int
}

func (c cli) run(args ...string) result {
	var out, errb bytes.Buffer
	a := newApp(&out, &errb, func(k string) string { return c.env[k] })
	if c.now != nil {
		a.now = c.now
	}
	a.isTerminal = func(io.Writer) bool { return c.term }
	a.termWidth = func(io.Writer) int { return max(c.width, 80) }
	a.pollInterval = 10 * time.Millisecond
	code := a.run(context.Background(), args)
	return result{out.String(), errb.String(), code}
}

// fixtures are the objects the golden commands look at.
type fixtures struct {
	infra, cluster, token, managedHost, infraHost string
}

func setUp(t *testing.T, c *clustertest.Cluster) fixtures {
	t.Helper()
	ctx := context.Background()
	api := c.Client()
	name, kind, pool := "paris-dc1", "onpremise", "10.20.0.240/28"
	in, err := api.CreateInfra(ctx, v1.CreateInfraRequest{Name: &name, Kind: &kind, VIPPool: &pool})
	if err != nil {
		t.Fatal(err)
	}
	managed := addHosts(t, c, "pool", 0, 2, v1.ManagedInfraID, 8, 32<<30, nil)
	site := addHosts(t, c, "paris", 2, 2, in.ID, 4, 16<<30, map[string]string{"rack": "r1", "zone": "a"})
	cname, size, one := "demo", "small", 1
	cl, err := api.CreateCluster(ctx, v1.CreateClusterRequest{Name: &cname, ControlPlanes: &one, Workers: &one, NodeSize: &size})
	if err != nil {
		t.Fatal(err)
	}
	tname, exp := "ci-pipeline", "90d"
	perms := []string{v1.PermRead, v1.PermWrite}
	tok, err := api.CreateToken(ctx, v1.CreateTokenRequest{Name: &tname, Permissions: &perms, Expires: &exp})
	if err != nil {
		t.Fatal(err)
	}
	return fixtures{infra: in.ID, cluster: cl.ID, token: tok.ID, managedHost: managed[0].ID, infraHost: site[0].ID}
}

// addHosts registers n available hosts named <prefix>-<i> through the service, as
// clustertest.AddHosts does, but with names, MACs and addresses of their own (numbered from
// seq+1): AddHosts numbers them across the whole test binary, which would change the goldens
// whenever another test (or -count) adds hosts first. Host i has i times mem, because
// placement breaks ties between equal hosts by their random IDs.
func addHosts(t *testing.T, c *clustertest.Cluster, prefix string, seq, n int, infra string, cpus int, mem int64, labels map[string]string) []*v1.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*v1.Host
	for i := 1; i <= n; i++ {
		seq++
		h, err := c.Service().RegisterHost(ctx, service.HostRegistration{
			InfraID:     infra,
			Hostname:    fmt.Sprintf("%s-%d", prefix, i),
			Accept:      true,
			CPUs:        cpus,
			MemoryBytes: mem * int64(i),
			Disks:       []v1.Disk{{Name: "vda", SizeBytes: 100 << 30}},
			NICs:        []v1.NIC{{Name: "eth0", MAC: fmt.Sprintf("02:00:00:00:00:%02x", seq), Addresses: []string{fmt.Sprintf("192.0.2.%d/24", seq)}, Up: true}},
			Labels:      labels,
		})
		if err != nil {
			t.Fatalf("register host: %v", err)
		}
		out = append(out, h)
	}
	return out
}

// addDiscoveredHost registers a host in a baremetal infra of its own, where hosts wait in
// discovered until accepted; its MAC and address follow the four hosts of setUp.
func addDiscoveredHost(t *testing.T, c *clustertest.Cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, kind := "lille-bm", "baremetal"
	in, err := c.Client().CreateInfra(ctx, v1.CreateInfraRequest{Name: &name, Kind: &kind})
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Service().RegisterHost(ctx, service.HostRegistration{
		InfraID:     in.ID,
		Hostname:    "bm-1",
		CPUs:        16,
		MemoryBytes: 64 << 30,
		Disks:       []v1.Disk{{Name: "nvme0n1", SizeBytes: 500 << 30}},
		NICs:        []v1.NIC{{Name: "eno1", MAC: "02:00:00:00:00:05", Addresses: []string{"192.0.2.5/24"}, Up: true}},
	})
	if err != nil {
		t.Fatalf("register host: %v", err)
	}
	if h.State != v1.HostDiscovered {
		t.Fatalf("host %s registered %s, want discovered", h.ID, h.State)
	}
	return h.ID
}

// TestGolden runs every list and get command, in each output format, plus the usage and
// API errors, against an in-process coordinator, and compares what it prints with
// testdata/<name>.golden once random IDs, secrets, ports and times are normalised.
func TestGolden(t *testing.T) {
	start := time.Now()
	c := clustertest.Start(t, clustertest.Options{})
	fx := setUp(t, c)
	run := cli{
		env: map[string]string{"DEPLOYME_API": c.URL(), "DEPLOYME_TOKEN": c.AdminToken, "HOME": t.TempDir()},
		// Every object is made within seconds of start: an hour and a half later they are
		// all "1h" old, however long the set-up took.
		now: func() time.Time { return start.Add(90 * time.Minute) },
	}
	// discoveredHost is registered just before the case that accepts it: set up with the
	// others, it would show in every host list.
	var discoveredHost string
	ids := func() *strings.Replacer {
		return strings.NewReplacer("{infra}", fx.infra, "{cluster}", fx.cluster, "{token}", fx.token,
			"{managed-host}", fx.managedHost, "{infra-host}", fx.infraHost, "{discovered-host}", discoveredHost)
	}

	type tc struct {
		name string
		args string // placeholders in braces stand for the fixtures' IDs
		code int
	}
	// before makes, for the case of that name, what its command needs and the reads must not
	// see.
	before := map[string]func(t *testing.T){
		"host-accept": func(t *testing.T) { discoveredHost = addDiscoveredHost(t, c) },
	}
	var cases []tc
	// Every read command in every format.
	for _, read := range []struct{ name, args string }{
		{"cluster-list", "cluster list"},
		{"cluster-list-status", "cluster list --status running"},
		{"cluster-get", "cluster get {cluster}"},
		{"cluster-nodes", "cluster nodes {cluster}"},
		{"cluster-events", "cluster events {cluster}"},
		{"infra-list", "infra list"},
		{"infra-get", "infra get {infra}"},
		{"host-list", "host list"},
		{"host-list-infra", "host list --infra {infra}"},
		{"host-get", "host get {infra-host}"},
		{"token-list", "token list"},
		{"token-get", "token get {token}"},
		{"coordinator-members", "coordinator members"},
	} {
		for _, o := range []string{"table", "json", "yaml"} {
			cases = append(cases, tc{read.name + "." + o, read.args + " -o " + o, exitOK})
		}
	}
	cases = append(cases,
		// Usage errors: exit 2, a message, and where to look.
		tc{"help-no-args", "", exitOK},
		tc{"usage-unknown-command", "clustr list", exitUsage},
		tc{"usage-unknown-subcommand", "cluster frobnicate", exitUsage},
		tc{"usage-missing-id", "cluster get", exitUsage},
		tc{"usage-extra-arg", "cluster get {cluster} extra", exitUsage},
		tc{"usage-unknown-flag", "cluster list --colour", exitUsage},
		tc{"usage-bad-int", "cluster scale {cluster} --workers many", exitUsage},
		tc{"usage-required-flags", "cluster create demo2", exitUsage},
		tc{"usage-bad-output", "cluster list -o xml", exitUsage},
		tc{"usage-exclusive-flags", "cluster kubeconfig {cluster} -f x --merge", exitUsage},
		// API errors: exit 1 with the API's code and message.
		tc{"api-not-found", "cluster get cls_0123456789abcdef", exitError},
		tc{"api-conflict-scale", "cluster scale {cluster} --workers 2", exitError},
		tc{"api-conflict-kubeconfig", "cluster kubeconfig {cluster}", exitError},
		tc{"api-invalid", "cluster create Bad_Name --control-planes 2 --workers 1 --node-size small", exitError},
		tc{"api-capacity", "cluster create big --control-planes 3 --workers 5 --node-size xlarge", exitError},
		tc{"api-decommission-node", "host decommission {managed-host}", exitError},
		tc{"api-bad-token", "cluster list --token dpl_wrong", exitError},
		// Writes, last: they change what the reads above would show.
		tc{"infra-create", "infra create lyon-rack2 --kind baremetal", exitOK},
		tc{"infra-join-token", "infra join-token {infra} --expires 24h --max-uses 3", exitOK},
		tc{"infra-join-token.json", "infra join-token {infra} -o json", exitOK},
		tc{"token-create", "token create --name deployer --permissions read,write --scope cluster:* --expires 30d --plan pro", exitOK},
		tc{"token-revoke", "token revoke {token}", exitOK},
		tc{"host-accept", "host accept {discovered-host}", exitOK},
		// A member that will never answer: a non-voter, so quorum is unaffected, removed again.
		tc{"coordinator-join", "coordinator join node-9 --raft-address 127.0.0.1:19999 --http-address 127.0.0.1:19998", exitOK},
		tc{"coordinator-remove-last-voter", "coordinator remove node-1", exitError},
		tc{"coordinator-remove", "coordinator leave node-9", exitOK},
		tc{"cluster-create-wait-timeout", "cluster create edge --control-planes 1 --workers 1 --node-size small --phase onpremise --infra {infra} --wait --timeout 300ms", exitError},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if fn := before[tc.name]; fn != nil {
				fn(t)
			}
			args := strings.Fields(ids().Replace(tc.args))
			got := run.run(args...)
			if got.code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tc.code, got.stdout, got.stderr)
			}
			text := fmt.Sprintf("$ deployme %s\nexit %d\n--- stdout\n%s--- stderr\n%s", tc.args, got.code, got.stdout, got.stderr)
			compareGolden(t, tc.name, normalize(text))
		})
	}
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

// Each replacement keeps the length of what it replaces where a table column could depend
// on it, so alignment is compared too.
var (
	idRE      = regexp.MustCompile(`\b(cls|host|infra|tok|jt)_[a-z0-9]{16}\b`)
	secretRE  = regexp.MustCompile(`\b(dpl|dpj)_[a-z0-9]{20,}`)
	timeRE    = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	portRE    = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	hashRE    = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	appliedRE = regexp.MustCompile(`("?applied_index"?: )\d+`)
)

// normalize replaces what differs between runs with stable placeholders, numbered by order
// of first appearance, so that the same ID is the same placeholder throughout one output.
func normalize(s string) string {
	seen := map[string]string{}
	count := map[string]int{}
	byOrder := func(re *regexp.Regexp, kind func(m string) string, mk func(m string, i int) string) {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			if r, ok := seen[m]; ok {
				return r
			}
			k := kind(m)
			count[k]++
			seen[m] = mk(m, count[k])
			return seen[m]
		})
	}
	same := func(kind string) func(string) string { return func(string) string { return kind } }
	byOrder(idRE, func(m string) string { return m[:strings.IndexByte(m, '_')] }, func(m string, i int) string {
		p := strings.IndexByte(m, '_') + 1
		return m[:p] + fmt.Sprintf("%0*d", len(m)-p, i)
	})
	byOrder(portRE, same("port"), func(_ string, i int) string { return fmt.Sprintf("127.0.0.1:PORT%d", i) })
	s = secretRE.ReplaceAllString(s, "${1}_SECRET")
	s = timeRE.ReplaceAllString(s, "TIME")
	s = hashRE.ReplaceAllString(s, "sha256:HASH")
	s = appliedRE.ReplaceAllString(s, "${1}N")
	return s
}

func TestNormalize(t *testing.T) {
	in := "cls_abcdefghij012345 host_0000aaaa1111bbbb cls_abcdefghij012345 cls_zzzzzzzzzzzzzzzz infra_managed " +
		"dpl_abcdefghijklmnopqrstuvwxyz 2026-11-27T06:06:04.077876833Z 127.0.0.1:41155 127.0.0.1:33205 127.0.0.1:41155"
	want := "cls_0000000000000001 host_0000000000000001 cls_0000000000000001 cls_0000000000000002 infra_managed " +
		"dpl_SECRET TIME 127.0.0.1:PORT1 127.0.0.1:PORT2 127.0.0.1:PORT1"
	if diff := cmp.Diff(want, normalize(in)); diff != "" {
		t.Errorf("normalize (-want +got):\n%s", diff)
	}
}

// TestListPagingHint: a page that is not the last says so on stderr, leaving stdout a table.
func TestListPagingHint(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	c.AddHosts(3, clustertest.HostSpec{})
	run := cli{env: map[string]string{"DEPLOYME_API": c.URL(), "DEPLOYME_TOKEN": c.AdminToken}}
	got := run.run("host", "list", "--per-page", "2")
	if got.code != exitOK {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	if n := strings.Count(got.stdout, "\n"); n != 3 {
		t.Errorf("stdout has %d lines, want a header and 2 hosts:\n%s", n, got.stdout)
	}
	if want := "page 1 of 2 (3 hosts); next: --page 2\n"; got.stderr != want {
		t.Errorf("stderr = %q, want %q", got.stderr, want)
	}
	got = run.run("host", "list", "--per-page", "2", "--page", "2")
	if got.stderr != "" || strings.Count(got.stdout, "\n") != 2 {
		t.Errorf("last page: stdout %q, stderr %q; want one host and no hint", got.stdout, got.stderr)
	}
}
