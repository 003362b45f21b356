package inventory

import (
	"context"
	"os"
	"runtime"
	"testing"
)

// TestCollectThisHost reads the real /proc, /sys, /etc and netlink of the machine running
// the tests. It only reads local kernel state: no packet is sent. Version probes are faked
// so that the test does not depend on (or run) whatever Kubernetes tools are installed.
func TestCollectThisHost(t *testing.T) {
	if _, err := os.Stat("/proc/cpuinfo"); err != nil {
		t.Skipf("no procfs: %v", err)
	}
	inv, err := Collect(context.Background(), Options{
		RunVersion: fakeVersions(nil),
		Labels:     map[string]string{"test": "host"},
	})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	t.Logf("inventory: %+v", inv)
	// runtime.NumCPU counts the CPUs this process may run on, which a cpuset can make
	// fewer than the host's online processors, never more.
	if inv.CPUs < 1 || inv.CPUs < runtime.NumCPU() {
		t.Errorf("CPUs = %d, want at least runtime.NumCPU() = %d", inv.CPUs, runtime.NumCPU())
	}
	if inv.MemoryBytes <= 0 {
		t.Errorf("MemoryBytes = %d, want > 0", inv.MemoryBytes)
	}
	if inv.Hostname == "" {
		t.Errorf("Hostname is empty")
	}
	if inv.Kernel == "" {
		t.Errorf("Kernel is empty")
	}
	links, err := Netlink{}.Links(context.Background())
	if err != nil {
		t.Fatalf("Netlink.Links: %v", err)
	}
	sawLoopback := false
	for _, l := range links {
		sawLoopback = sawLoopback || l.Loopback
	}
	if !sawLoopback {
		t.Errorf("netlink listed no loopback link, so skipping it went untested: %+v", links)
	}
	for _, n := range inv.NICs {
		if n.Name == "lo" {
			t.Errorf("loopback reported as a NIC: %+v", n)
		}
	}
	for _, d := range inv.Disks {
		if d.SizeBytes <= 0 {
			t.Errorf("disk %s has size %d", d.Name, d.SizeBytes)
		}
	}
	if inv.Labels["test"] != "host" {
		t.Errorf("Labels = %v, want test=host", inv.Labels)
	}
	again, err := Collect(context.Background(), Options{
		RunVersion: fakeVersions(nil),
		Labels:     map[string]string{"test": "host"},
	})
	if err != nil {
		t.Fatalf("second Collect: %v", err)
	}
	// An idle host described twice must not look changed, or the agent would re-send
	// its inventory forever.
	if Changed(inv, again) {
		t.Errorf("two collections of an idle host differ:\n%+v\n%+v", inv, again)
	}
}
