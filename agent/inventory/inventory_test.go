package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// fakeLinks is a LinkLister with a fixed answer.
type fakeLinks struct {
	links []Link
	err   error
}

func (f fakeLinks) Links(context.Context) ([]Link, error) { return f.links, f.err }

// fakeVersions answers version probes from a map; a missing tool is not installed, as
// ExecVersion reports it.
func fakeVersions(outputs map[string]string) func(context.Context, string) (string, error) {
	return func(_ context.Context, name string) (string, error) {
		out, ok := outputs[name]
		if !ok {
			return "", fmt.Errorf("inventory: %s: %w", name, exec.ErrNotFound)
		}
		return out, nil
	}
}

func fixedHostname(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

// hostOptions describes the machine of testdata/host: a PowerEdge with a rotational SATA
// disk, an NVMe disk, loop devices, an optical drive, eno1 up at 10G, eno2 down, and lo.
func hostOptions() Options {
	return Options{
		ProcDir: filepath.Join("testdata", "host", "proc"),
		SysDir:  filepath.Join("testdata", "host", "sys"),
		EtcDir:  filepath.Join("testdata", "host", "etc"),
		Links: fakeLinks{links: []Link{
			// Deliberately out of order, as the kernel may list them.
			{Name: "eno2", MAC: "b0:26:28:c1:7a:11"},
			{Name: "lo", Loopback: true, Up: true, Addresses: []string{"127.0.0.1/8", "::1/128"}},
			{Name: "eno1", MAC: "b0:26:28:c1:7a:10", Up: true, Addresses: []string{
				"fe80::b226:28ff:fec1:7a10/64", "10.20.0.15/24", "10.20.0.5/24",
			}},
		}},
		RunVersion: fakeVersions(map[string]string{
			"kubeadm": "v1.31.2\n",
			"kubelet": "Kubernetes v1.31.2\n",
		}),
		Labels:   map[string]string{"rack": "r12", "zone": "a"},
		Hostname: fixedHostname("node-12"),
	}
}

func TestCollectGolden(t *testing.T) {
	inv, err := Collect(context.Background(), hostOptions())
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	got, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "host.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("inventory differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestCollectIsStable(t *testing.T) {
	o := hostOptions()
	a, err := Collect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The same host listed in another order must not count as a change.
	links := o.Links.(fakeLinks).links
	reversed := make([]Link, len(links))
	for i, l := range links {
		l.Addresses = append([]string(nil), l.Addresses...)
		for j, k := 0, len(l.Addresses)-1; j < k; j, k = j+1, k-1 {
			l.Addresses[j], l.Addresses[k] = l.Addresses[k], l.Addresses[j]
		}
		reversed[len(links)-1-i] = l
	}
	o.Links = fakeLinks{links: reversed}
	b, err := Collect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if Changed(a, b) {
		t.Errorf("reordered links reported as a change:\n%s", cmp.Diff(a, b))
	}
}

// minimalTree writes a host with only what Collect requires.
func minimalTree(t *testing.T) (proc, sys, etc string) {
	t.Helper()
	root := t.TempDir()
	proc, sys, etc = filepath.Join(root, "proc"), filepath.Join(root, "sys"), filepath.Join(root, "etc")
	for _, d := range []string{proc, sys, etc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(proc, "cpuinfo"), "processor\t: 0\n")
	write(t, filepath.Join(proc, "meminfo"), "MemTotal:        1024 kB\n")
	return proc, sys, etc
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCollectMissingOptionalFiles(t *testing.T) {
	proc, sys, etc := minimalTree(t)
	inv, err := Collect(context.Background(), Options{
		ProcDir:    proc,
		SysDir:     sys,
		EtcDir:     etc,
		Links:      fakeLinks{links: []Link{{Name: "eth0", MAC: "52:54:00:12:34:56", Up: true}}},
		RunVersion: fakeVersions(nil),
		Hostname:   fixedHostname("vm"),
	})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	want := &Inventory{
		Hostname:    "vm",
		CPUs:        1,
		MemoryBytes: 1024 * 1024,
		Disks:       []Disk{},
		// No speed file: the speed is unknown, reported as 0.
		NICs:     []NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Up: true}},
		Versions: map[string]string{},
		Labels:   map[string]string{},
	}
	if diff := cmp.Diff(want, inv); diff != "" {
		t.Errorf("inventory (-want +got):\n%s", diff)
	}
}

func TestCollectErrors(t *testing.T) {
	errLinks := errors.New("netlink socket refused")
	errHost := errors.New("uts namespace gone")
	tests := []struct {
		name    string
		edit    func(t *testing.T, o *Options)
		wantErr error // matched with errors.Is; nil means any error
	}{
		{
			name:    "no cpuinfo",
			edit:    func(t *testing.T, o *Options) { remove(t, filepath.Join(o.ProcDir, "cpuinfo")) },
			wantErr: fs.ErrNotExist,
		},
		{
			name:    "no meminfo",
			edit:    func(t *testing.T, o *Options) { remove(t, filepath.Join(o.ProcDir, "meminfo")) },
			wantErr: fs.ErrNotExist,
		},
		{
			name: "meminfo without MemTotal",
			edit: func(t *testing.T, o *Options) { write(t, filepath.Join(o.ProcDir, "meminfo"), "MemFree: 1 kB\n") },
		},
		{
			name: "MemTotal not a number",
			edit: func(t *testing.T, o *Options) { write(t, filepath.Join(o.ProcDir, "meminfo"), "MemTotal: lots kB\n") },
		},
		{
			name: "cpuinfo without processors",
			edit: func(t *testing.T, o *Options) { write(t, filepath.Join(o.ProcDir, "cpuinfo"), "Hardware: x\n") },
		},
		{
			name:    "link listing fails",
			edit:    func(_ *testing.T, o *Options) { o.Links = fakeLinks{err: errLinks} },
			wantErr: errLinks,
		},
		{
			name:    "hostname fails",
			edit:    func(_ *testing.T, o *Options) { o.Hostname = func() (string, error) { return "", errHost } },
			wantErr: errHost,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, sys, etc := minimalTree(t)
			o := Options{
				ProcDir: proc, SysDir: sys, EtcDir: etc,
				Links:      fakeLinks{},
				RunVersion: fakeVersions(nil),
				Hostname:   fixedHostname("h"),
			}
			tt.edit(t, &o)
			inv, err := Collect(context.Background(), o)
			if err == nil {
				t.Fatalf("Collect = %+v, want an error", inv)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Collect error = %v, want one wrapping %v", err, tt.wantErr)
			}
		})
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestCollectVersions(t *testing.T) {
	broken := errors.New("exit status 1")
	tests := []struct {
		name  string
		probe func(context.Context, string) (string, error)
		want  map[string]string
	}{
		{
			name:  "none installed",
			probe: fakeVersions(nil),
			want:  map[string]string{},
		},
		{
			name: "all installed",
			probe: fakeVersions(map[string]string{
				"kubeadm":    "v1.31.2\n",
				"kubelet":    "Kubernetes v1.31.2\n",
				"containerd": "containerd github.com/containerd/containerd/v2 v2.0.0 207ad711eabd375a01713109a8a197d197ff6542\n",
			}),
			want: map[string]string{"kubeadm": "v1.31.2", "kubelet": "v1.31.2", "containerd": "v2.0.0"},
		},
		{
			// A broken tool must not keep the host from registering.
			name: "a probe fails",
			probe: func(ctx context.Context, name string) (string, error) {
				if name == "kubelet" {
					return "", broken
				}
				return fakeVersions(map[string]string{"kubeadm": "v1.30.0"})(ctx, name)
			},
			want: map[string]string{"kubeadm": "v1.30.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, sys, etc := minimalTree(t)
			inv, err := Collect(context.Background(), Options{
				ProcDir: proc, SysDir: sys, EtcDir: etc,
				Links:      fakeLinks{},
				RunVersion: tt.probe,
				Hostname:   fixedHostname("h"),
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, inv.Versions); diff != "" {
				t.Errorf("versions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCollectCancelled(t *testing.T) {
	proc, sys, etc := minimalTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Collect(ctx, Options{
		ProcDir: proc, SysDir: sys, EtcDir: etc,
		Links:      fakeLinks{},
		RunVersion: fakeVersions(nil),
		Hostname:   fixedHostname("h"),
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Collect error = %v, want context.Canceled", err)
	}
}

func TestCollectCopiesLabels(t *testing.T) {
	o := hostOptions()
	inv, err := Collect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The agent keeps its parsed --labels; a later edit of the inventory must not reach it.
	inv.Labels["rack"] = "changed"
	if o.Labels["rack"] != "r12" {
		t.Errorf("Collect shares the Labels map with its caller")
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct{ out, want string }{
		{"v1.31.2\n", "v1.31.2"},
		{"Kubernetes v1.31.2\n", "v1.31.2"},
		{"containerd github.com/containerd/containerd/v2 v2.0.0 207ad711eabd\n", "v2.0.0"},
		{"containerd containerd.io 1.7.22 7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c\n", "1.7.22"},
		{"  something odd \n", "something odd"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := parseVersion(tt.out); got != tt.want {
			t.Errorf("parseVersion(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}

func TestParseVPD80(t *testing.T) {
	tests := []struct {
		name string
		page []byte
		want string
	}{
		{"padded", append([]byte{0, 0x80, 0, 10}, "  ZL2ABCD1"...), "ZL2ABCD1"},
		{"length shorter than data", append([]byte{0, 0x80, 0, 3}, "ABCDEF"...), "ABC"},
		{"NUL padded", append([]byte{0, 0x80, 0, 6}, "XY1\x00\x00\x00"...), "XY1"},
		{"wrong page", append([]byte{0, 0x83, 0, 3}, "ABC"...), ""},
		{"truncated", []byte{0, 0x80}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseVPD80(tt.page); got != tt.want {
				t.Errorf("parseVPD80 = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadPrettyName(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"double quoted", "NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n", "Debian GNU/Linux 12 (bookworm)"},
		{"single quoted", "PRETTY_NAME='Fedora Linux 40'\n", "Fedora Linux 40"},
		{"unquoted", "PRETTY_NAME=Alpine\n", "Alpine"},
		{"escaped quote", `PRETTY_NAME="My \"special\" OS"` + "\n", `My "special" OS`},
		{"absent", "NAME=x\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "os-release")
			write(t, path, tt.content)
			if got := readPrettyName(path); got != tt.want {
				t.Errorf("readPrettyName = %q, want %q", got, tt.want)
			}
		})
	}
	if got := readPrettyName(filepath.Join(t.TempDir(), "missing")); got != "" {
		t.Errorf("readPrettyName(missing) = %q, want empty", got)
	}
}

func TestReadSpeed(t *testing.T) {
	tests := []struct {
		name    string
		content *string
		want    int
	}{
		{"10G", ptr("10000\n"), 10000},
		{"unknown", ptr("-1\n"), 0},
		{"garbage", ptr("fast\n"), 0},
		{"absent", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "speed")
			if tt.content != nil {
				write(t, path, *tt.content)
			}
			if got := readSpeed(path); got != tt.want {
				t.Errorf("readSpeed = %d, want %d", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestChanged(t *testing.T) {
	base := func() *Inventory {
		return &Inventory{
			Hostname: "h", CPUs: 2, MemoryBytes: 1 << 30,
			Disks:    []Disk{{Name: "sda", SizeBytes: 1 << 40}},
			NICs:     []NIC{{Name: "eth0", MAC: "52:54:00:00:00:01", Up: true, Addresses: []string{"10.0.0.2/24"}}},
			Versions: map[string]string{"kubelet": "v1.31.2"},
			Labels:   map[string]string{"rack": "r1"},
		}
	}
	tests := []struct {
		name string
		edit func(*Inventory)
		want bool
	}{
		{"same", func(*Inventory) {}, false},
		{"link goes down", func(i *Inventory) { i.NICs[0].Up = false }, true},
		{"address changes", func(i *Inventory) { i.NICs[0].Addresses = []string{"10.0.0.3/24"} }, true},
		{"kubeadm installed", func(i *Inventory) { i.Versions["kubeadm"] = "v1.31.2" }, true},
		{"label added", func(i *Inventory) { i.Labels["zone"] = "a" }, true},
		{"disk added", func(i *Inventory) { i.Disks = append(i.Disks, Disk{Name: "sdb"}) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base()
			tt.edit(b)
			if got := Changed(base(), b); got != tt.want {
				t.Errorf("Changed = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("empty versus nil", func(t *testing.T) {
		a, b := base(), base()
		a.Versions, b.Versions = nil, map[string]string{}
		a.NICs[0].Addresses, b.NICs[0].Addresses = nil, []string{}
		if Changed(a, b) {
			t.Errorf("nil and empty collections reported as a change")
		}
	})
	if Changed(nil, nil) || !Changed(nil, base()) {
		t.Errorf("Changed mishandles nil inventories")
	}
}

func TestExecVersionNotInstalled(t *testing.T) {
	// An empty PATH: the probe must report absence the way Collect recognises, without
	// running anything.
	t.Setenv("PATH", t.TempDir())
	_, err := ExecVersion(context.Background(), "kubelet")
	if !errors.Is(err, exec.ErrNotFound) || !isNotInstalled(err) {
		t.Errorf("ExecVersion(kubelet) error = %v, want one wrapping exec.ErrNotFound", err)
	}
	if _, err := ExecVersion(context.Background(), "bash"); err == nil || isNotInstalled(err) {
		t.Errorf("ExecVersion(bash) error = %v, want a refusal of an unknown tool", err)
	}
}
