// Package vmtest runs a Go test binary inside a QEMU virtual machine booted from Debian's
// stock kernel (linux-image-amd64) and a small initrd built on the fly: busybox, iproute2,
// the kernel modules the tests need, and the test binary as the payload.
//
// It exists because some kernels a test may land on lack features the product needs
// (the CI machines' own kernel has no VLAN and no bonding support), while Debian's kernel
// has them all as modules. The guest has no network device: the tests it runs build their
// own links in namespaces inside the guest. QEMU runs with software emulation (TCG).
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/images/initramfs"
)

// Options says what to run in the guest.
type Options struct {
	// TestBinary is a statically linked Go test binary (CGO_ENABLED=0 go test -c).
	TestBinary string
	// Args are passed to it, e.g. -test.v -test.run X.
	Args []string
	// Modules are loaded (with their dependencies, in order) before the test binary runs.
	Modules []string
	// Binaries are host programs copied into the guest with the shared libraries they need
	// (e.g. "ip" for network namespaces).
	Binaries []string
	// Timeout bounds the whole VM run; default 5 minutes.
	Timeout time.Duration
}

// Result is what the guest printed and how the test binary exited.
type Result struct {
	Output   string
	ExitCode int
	Elapsed  time.Duration
}

// Kernel finds Debian's installed kernel: its version and the vmlinuz path. It skips the
// test with a message when none is installed (CI installs linux-image-amd64).
func Kernel(t testing.TB) (version, vmlinuz string) {
	t.Helper()
	matches, _ := filepath.Glob("/boot/vmlinuz-*-amd64")
	sort.Strings(matches)
	for i := len(matches) - 1; i >= 0; i-- {
		v := strings.TrimPrefix(filepath.Base(matches[i]), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			return v, matches[i]
		}
	}
	t.Skip("needs Debian's kernel (apt-get install linux-image-amd64) to boot a VM; .ci/run installs it")
	return "", ""
}

// Require skips unless QEMU, busybox and a Debian kernel are installed.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (apt-get install qemu-system-x86 busybox-static); .ci/run installs it", bin)
		}
	}
	Kernel(t)
}

// Run boots a VM that runs opts.TestBinary and returns what it printed.
func Run(t testing.TB, opts Options) Result {
	t.Helper()
	Require(t)
	kver, vmlinuz := Kernel(t)
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	initrd := filepath.Join(t.TempDir(), "initrd.cpio.gz")
	if err := buildInitrd(initrd, kver, opts); err != nil {
		t.Fatalf("build initrd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	// -cpu max gives the guest RDRAND: without it Go's crypto/rand waits about two
	// minutes for the kernel's entropy pool.
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=3 panic=-1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	res := Result{Output: out.String(), ExitCode: -1, Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("the VM did not finish within %v; console:\n%s", opts.Timeout, tail(res.Output, 8000))
	}
	if err != nil {
		t.Fatalf("qemu: %v; console:\n%s", err, tail(res.Output, 8000))
	}
	m := regexp.MustCompile(`VMTEST-EXIT (\d+)`).FindStringSubmatch(res.Output)
	if m == nil {
		t.Fatalf("the guest never reported its test's exit code; console:\n%s", tail(res.Output, 8000))
	}
	res.ExitCode, _ = strconv.Atoi(m[1])
	return res
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// initScript mounts what a Go test needs, loads the modules and runs the test binary.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run /var
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run; ln -s /run /var/run
for m in $(cat /modules.order); do insmod /modules/$m.ko || echo "VMTEST-INSMOD-FAILED $m"; done
ip link set lo up
echo VMTEST-START
cd /tmp
HOME=/tmp PATH=/usr/sbin:/usr/bin:/bin:/sbin /payload.test ARGS
echo "VMTEST-EXIT $?"
poweroff -f
`

func buildInitrd(path, kver string, opts Options) error {
	files := map[string]file{}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	if err := addFile(files, "/bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	if err := addFile(files, "/payload.test", opts.TestBinary, 0o755); err != nil {
		return err
	}
	for _, b := range opts.Binaries {
		p, err := exec.LookPath(b)
		if err != nil {
			return err
		}
		if err := addFile(files, "/usr/sbin/"+filepath.Base(p), p, 0o755); err != nil {
			return err
		}
		libs, err := sharedLibs(p)
		if err != nil {
			return err
		}
		for _, l := range libs {
			if err := addFile(files, l, l, 0o755); err != nil {
				return err
			}
		}
	}
	order, err := moduleOrder(kver, opts.Modules)
	if err != nil {
		return err
	}
	var names []string
	for _, m := range order {
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		names = append(names, name)
		if err := addFile(files, "/modules/"+name+".ko", filepath.Join("/lib/modules", kver, m), 0o644); err != nil {
			return err
		}
	}
	files["/modules.order"] = file{data: []byte(strings.Join(names, "\n") + "\n"), mode: 0o644}
	args := make([]string, len(opts.Args))
	for i, a := range opts.Args {
		args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	files["/init"] = file{data: []byte(strings.Replace(initScript, "ARGS", strings.Join(args, " "), 1)), mode: 0o755}
	return writeCPIO(path, files)
}

type file struct {
	data []byte
	mode os.FileMode
}

func addFile(files map[string]file, dst, src string, mode os.FileMode) error {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(real)
	if err != nil {
		return err
	}
	files[dst] = file{data: b, mode: mode}
	return nil
}

// sharedLibs lists the libraries (and the dynamic loader) a host binary needs, from ldd.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}

// moduleOrder resolves modules and their dependencies from modules.dep into load order
// (dependencies first). Built-in modules (not in modules.dep) are skipped.
func moduleOrder(kver string, want []string) ([]string, error) {
	f, err := os.Open(filepath.Join("/lib/modules", kver, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{} // path -> dependency paths
	byName := map[string]string{} // module name -> path
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		path, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[path] = strings.Fields(rest)
		name := strings.TrimSuffix(filepath.Base(path), ".ko")
		byName[strings.ReplaceAll(name, "-", "_")] = path
	}
	var order []string
	seen := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, d := range deps[p] {
			visit(d)
		}
		order = append(order, p)
	}
	for _, m := range want {
		p, ok := byName[strings.ReplaceAll(m, "-", "_")]
		if !ok {
			continue // built into this kernel
		}
		visit(p)
	}
	for _, p := range order {
		if strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst") || strings.HasSuffix(p, ".ko.gz") {
			return nil, errors.New("compressed kernel modules are not supported: " + p)
		}
	}
	return order, nil
}

// writeCPIO writes files as a gzipped newc archive (images/initramfs: parent directories,
// sorted entries, what the kernel unpacks into its initramfs).
func writeCPIO(path string, files map[string]file) error {
	a := initramfs.New()
	for name, f := range files {
		if err := a.File(name, f.mode.Perm(), f.data); err != nil {
			return err
		}
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := a.WriteGzip(out); err != nil {
		return err
	}
	return out.Close()
}
