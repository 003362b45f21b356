package images

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The image is built once per test binary (a build takes about ten seconds, a minute with a
// cold Go cache) and shared by the tests that need one. Builds run `go run ./images/build`,
// what `make images` runs, in a process of its own: under the race detector an in-process
// build spends minutes in gzip.
var (
	imageOnce sync.Once
	imageDir  string
	imageErr  error
	imageTmp  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if imageTmp != "" {
		os.RemoveAll(imageTmp)
	}
	os.Exit(code)
}

// requireBuild skips the test when this machine cannot build the image, and returns the
// go command and the repository's root.
func requireBuild(t *testing.T) (goCmd, root string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the netboot image (ten seconds to a minute); skipped with -short")
	}
	var missing *MissingError
	if _, err := DefaultConfig().CheckInputs(); errors.As(err, &missing) {
		t.Skipf("%v; .ci/run installs it", missing)
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command on PATH to build the image")
	}
	root, err = filepath.Abs("..") // the tests run in images/
	if err != nil {
		t.Fatal(err)
	}
	return goCmd, root
}

// buildImage runs the build command into out, with extra environment variables.
func buildImage(goCmd, root, out string, env ...string) error {
	cmd := exec.Command(goCmd, "run", "./images/build", "-out", out, "-go", goCmd)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go run ./images/build: %w\n%s", err, b)
	}
	return nil
}

// sharedImage returns the directory of an image built with the default configuration.
func sharedImage(t *testing.T) string {
	t.Helper()
	goCmd, root := requireBuild(t)
	imageOnce.Do(func() {
		imageTmp, imageErr = os.MkdirTemp("", "deployme-images-")
		if imageErr == nil {
			imageDir = filepath.Join(imageTmp, "one")
			imageErr = buildImage(goCmd, root, imageDir)
		}
	})
	if imageErr != nil {
		t.Fatalf("build: %v", imageErr)
	}
	return imageDir
}

// TestReproducible builds the image a second time, into another directory and with an
// empty Go build cache (so that the binaries are really rebuilt), and expects the same
// bytes.
func TestReproducible(t *testing.T) {
	first := sharedImage(t)
	goCmd, root := requireBuild(t)
	second := filepath.Join(t.TempDir(), "two")
	if err := buildImage(goCmd, root, second, "GOCACHE="+t.TempDir()); err != nil {
		t.Fatal(err)
	}
	a, err := os.ReadFile(filepath.Join(first, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(second, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(a), string(b)); diff != "" {
		ma, _ := os.ReadFile(filepath.Join(first, Manifest))
		mb, _ := os.ReadFile(filepath.Join(second, Manifest))
		t.Errorf("SHA256SUMS differ (-first +second):\n%s\ninitrd manifests (-first +second):\n%s",
			diff, cmp.Diff(string(ma), string(mb)))
	}
	// SHA256SUMS must list exactly the files the build wrote.
	entries, err := os.ReadDir(second)
	if err != nil {
		t.Fatal(err)
	}
	var written, summed []string
	for _, e := range entries {
		if e.Name() == SumsFile {
			continue
		}
		written = append(written, e.Name())
		if info, err := e.Info(); err == nil {
			t.Logf("%-14s %10d bytes", e.Name(), info.Size())
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		summed = append(summed, strings.Fields(line)[1])
	}
	sort.Strings(written)
	if diff := cmp.Diff(written, summed); diff != "" {
		t.Errorf("files vs SHA256SUMS (-written +summed):\n%s", diff)
	}
}

func TestVersionLess(t *testing.T) {
	got := []string{"6.1.0-56-amd64", "6.1.0-9-amd64", "6.12.1-1-amd64", "5.10.0-30-amd64", "6.1.0-56-cloud-amd64"}
	sort.Slice(got, func(i, j int) bool { return versionLess(got[i], got[j]) })
	want := []string{"5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-56-cloud-amd64", "6.12.1-1-amd64"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// fakeKernel lays out /boot and /lib/modules for the given versions, with a small
// modules.dep and modules.builtin.
func fakeKernel(t *testing.T, versions ...string) (boot, modules string) {
	t.Helper()
	root := t.TempDir()
	boot, modules = filepath.Join(root, "boot"), filepath.Join(root, "lib", "modules")
	dep := strings.Join([]string{
		"kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
		"kernel/net/core/failover.ko:",
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_ring.ko:",
		"kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko:",
	}, "\n") + "\n"
	for _, v := range versions {
		write(t, filepath.Join(boot, "vmlinuz-"+v), "kernel "+v)
		write(t, filepath.Join(modules, v, "modules.dep"), dep)
		write(t, filepath.Join(modules, v, "modules.builtin"), "kernel/drivers/net/ethernet/realtek/8139too.ko\n")
	}
	return boot, modules
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

func TestFindKernel(t *testing.T) {
	boot, modules := fakeKernel(t, "6.1.0-9-amd64", "6.1.0-56-amd64")
	// The newest image whose modules are missing is passed over.
	write(t, filepath.Join(boot, "vmlinuz-6.1.0-60-amd64"), "no modules")
	k, err := FindKernel(boot, modules, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Kernel{Version: "6.1.0-56-amd64", Image: filepath.Join(boot, "vmlinuz-6.1.0-56-amd64"), Modules: filepath.Join(modules, "6.1.0-56-amd64")}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if k, err := FindKernel(boot, modules, "6.1.0-9-amd64"); err != nil || k.Version != "6.1.0-9-amd64" {
		t.Errorf("asked for 6.1.0-9-amd64: %+v, %v", k, err)
	}
	var missing *MissingError
	if _, err := FindKernel(boot, modules, "7.0.0-1-amd64"); !errors.As(err, &missing) {
		t.Errorf("missing version: %v, want a MissingError", err)
	}
	if _, err := FindKernel(t.TempDir(), modules, ""); !errors.As(err, &missing) {
		t.Errorf("no kernel at all: %v, want a MissingError", err)
	}
}

func TestResolveModules(t *testing.T) {
	_, modules := fakeKernel(t, "6.1.0-56-amd64")
	dir := filepath.Join(modules, "6.1.0-56-amd64")
	got, err := ResolveModules(dir, []string{"virtio_rng", "virtio-net", "8139too", "e1000", "virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/char/hw_random/virtio-rng.ko",
		"kernel/net/core/failover.ko", // before net_failover, which needs it
		"kernel/drivers/net/net_failover.ko",
		"kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ResolveModules(dir, []string{"e1000", "no_such_driver"}); err == nil || !strings.Contains(err.Error(), "no_such_driver") {
		t.Errorf("unknown module: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no out dir": func(c *Config) { c.OutDir = "" },
		"no go":      func(c *Config) { c.Go = "" },
		"no modules": func(c *Config) { c.Modules = nil },
		"no ipxe":    func(c *Config) { c.IPXEDir = "" },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

// TestInitrdHasWhatInitNeeds reads the shared image's manifest: the paths init and the
// agent rely on are there, and the module order names exactly the modules shipped.
func TestInitrdHasWhatInitNeeds(t *testing.T) {
	dir := sharedImage(t)
	m, err := os.ReadFile(filepath.Join(dir, Manifest))
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	var modules []string
	for _, line := range strings.Split(strings.TrimSpace(string(m)), "\n") {
		f := strings.Fields(line)
		p := f[len(f)-1]
		paths[p] = true
		if strings.HasPrefix(p, "/lib/modules/") && strings.Contains(p, ".ko") {
			modules = append(modules, filepath.Base(p))
		}
	}
	for _, p := range []string{"/init", "/bin/agent", "/lib/modules/order", "/dev/console", "/etc/hostname", "/etc/os-release",
		"/lib/modules/virtio_net.ko", "/lib/modules/virtio-rng.ko", "/lib/modules/e1000e.ko", "/lib/modules/igb.ko", "/lib/modules/ixgbe.ko"} {
		if !paths[p] {
			t.Errorf("%s missing from the initrd", p)
		}
	}
	if bytes.Contains(m, []byte(" /lib/modules/kernel/")) {
		t.Error("modules are not flat under /lib/modules")
	}
	t.Logf("%d modules: %s", len(modules), fmt.Sprint(modules))
}
