// Package pxe boots real QEMU virtual machines (software emulation, no disk) from the
// network through the coordinator's own DHCP, TFTP and HTTP into the netboot image built by
// images/, on a boot segment made of namespaces the test creates, and waits for the machine's
// agent to register. It needs root, iproute2, QEMU, Debian's kernel and iPXE binaries; it
// skips with a message without them (.ci/run installs them).
package pxe

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// coordinatorBin is bin/coordinator built for the test; assets is the netboot image
// directory (make images output).
var coordinatorBin, assets string

// missing says what this machine lacks for the tests, if anything.
var missing string

func TestMain(m *testing.M) {
	flag.Parse()
	switch {
	case testing.Short():
		missing = "-short"
	case os.Geteuid() != 0:
		missing = "root (network namespaces, tap devices)"
	}
	for _, bin := range []string{"ip", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(bin); err != nil && missing == "" {
			missing = bin
		}
	}
	if k, _ := filepath.Glob("/boot/vmlinuz-*-amd64"); len(k) == 0 && missing == "" {
		missing = "Debian's kernel (linux-image-amd64)"
	}
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil && missing == "" {
		missing = "Debian's iPXE binaries (ipxe)"
	}
	if missing != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "deployme-pxe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		root, err := moduleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		coordinatorBin = filepath.Join(dir, "coordinator")
		if out, err := run(root, "go", "build", "-o", coordinatorBin, "./cmd/coordinator"); err != nil {
			fmt.Fprintf(os.Stderr, "build coordinator: %v\n%s", err, out)
			return 1
		}
		assets = filepath.Join(dir, "images")
		if out, err := run(root, "go", "run", "./images/build", "-out", assets); err != nil {
			fmt.Fprintf(os.Stderr, "build the netboot image: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func run(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

func require(t *testing.T) {
	t.Helper()
	if missing != "" {
		t.Skipf("needs %s", missing)
	}
}
