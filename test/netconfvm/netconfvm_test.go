// Package netconfvm runs agent/netconf's tests inside a QEMU VM booted from Debian's stock
// kernel, which has VLAN (8021q) and bonding support as modules. Some machines, our CI's
// included, run kernels built without them: there the tests skip, and this is where their
// acceptance (a VLAN, a bond of two veths and static addresses in a network namespace) is
// shown.
package netconfvm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deployme/deployme/internal/vmtest"
)

func TestNetconfOnDebianKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	vmtest.Require(t)
	bin := filepath.Join(t.TempDir(), "netconf.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "github.com/deployme/deployme/agent/netconf")
	// Static: the guest has no C library for Go binaries.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c ./agent/netconf: %v\n%s", err, out)
	}
	res := vmtest.Run(t, vmtest.Options{
		TestBinary: bin,
		Args:       []string{"-test.v", "-test.count=1"},
		Modules:    []string{"veth", "bridge", "8021q", "bonding"},
		Binaries:   []string{"ip"},
	})
	out := res.Output
	if i := strings.Index(out, "VMTEST-START"); i >= 0 {
		out = out[i:]
	}
	t.Logf("VM run (boot and tests, software emulation) took %v; guest output:\n%s", res.Elapsed.Round(100*1e6), out)
	if strings.Contains(res.Output, "VMTEST-INSMOD-FAILED") {
		t.Errorf("a kernel module did not load in the guest")
	}
	if res.ExitCode != 0 {
		t.Fatalf("agent/netconf tests failed in the VM (exit %d)", res.ExitCode)
	}
	// The point of the VM is that nothing skips for want of kernel support.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "--- SKIP") {
			t.Errorf("skipped in the VM: %s", strings.TrimSpace(line))
		}
	}
	if !strings.Contains(out, "--- PASS: TestApplyVLANBondAddresses") {
		t.Errorf("TestApplyVLANBondAddresses did not run and pass in the VM")
	}
}
