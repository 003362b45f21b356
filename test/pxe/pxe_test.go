package pxe

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployme/deployme/api/client"
	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/internal/netnstest"
)

func ptr[T any](v T) *T { return &v }

const vmMAC = "52:54:00:12:34:56"

// segment is a boot segment: a namespace with a bridge that replicas and VMs plug into.
type segment struct {
	t  *testing.T
	ns *netnstest.NS
	n  int // taps made
}

func newSegment(t *testing.T) *segment {
	t.Helper()
	ns := netnstest.New(t)
	netnstest.Bridge(t, ns, "br0")
	return &segment{t: t, ns: ns}
}

// replica is a coordinator process with its own namespace on the segment.
type replica struct {
	ip   string
	ns   *netnstest.NS
	proc *netnstest.Proc
	dir  string
}

func (r *replica) api(token string) *client.Client {
	return client.New("http://"+r.ip+":8080", token).WithHTTPClient(r.ns.HTTPClient(20 * time.Second))
}

// startReplica runs bin/coordinator in a namespace plugged into the segment at ip. join
// names a replica to join (nil bootstraps); pxe turns the boot services on.
func (s *segment) startReplica(name, ip string, join *replica, pxe bool) *replica {
	t := s.t
	t.Helper()
	ns := netnstest.New(t)
	netnstest.Plug(t, s.ns, "br0", ns, "eth0", ip+"/24")
	r := &replica{ip: ip, ns: ns, dir: t.TempDir()}
	args := []string{"--data-dir", r.dir, "--node-id", name,
		"--http-addr", ip + ":8080", "--grpc-addr", ip + ":9090", "--raft-addr", ip + ":7000"}
	if join != nil {
		// Cluster CAs are sealed with the keyring: every replica needs the same one.
		b, err := os.ReadFile(filepath.Join(join.dir, "keyring"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, "keyring"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		// Joining takes an admin token of the cluster (the bootstrap replica's).
		tokenFile := filepath.Join(r.dir, "join-token")
		if err := os.WriteFile(tokenFile, []byte(join.adminToken(t)), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--join", "http://"+join.ip+":8080", "--admin-token-file", tokenFile)
	}
	if pxe {
		args = append(args, "--pxe", "--pxe-interface", "eth0", "--pxe-dhcp-mode", "full",
			"--pxe-dhcp-range", "10.78.0.100-10.78.0.150", "--pxe-assets", assets, "--pxe-infra", "rack",
			"--pxe-tftp-addr", ip+":69", "--pxe-chain-ipxe")
	}
	r.proc = netnstest.Start(t, ns, name, nil, coordinatorBin, args...)
	return r
}

// adminToken waits for the bootstrap replica's generated admin token.
func (r *replica) adminToken(t *testing.T) string {
	t.Helper()
	var token string
	waitFor(t, 30*time.Second, "the admin token", r, func() bool {
		b, err := os.ReadFile(filepath.Join(r.dir, "admin-token"))
		token = strings.TrimSpace(string(b))
		return err == nil && token != ""
	})
	return token
}

// vm is a QEMU machine with no disk booting from the network on a tap of the segment.
type vm struct {
	cmd     *exec.Cmd
	console string
	started time.Time
	exited  chan struct{}
}

func (s *segment) bootVM(t *testing.T, firmware string) *vm {
	t.Helper()
	s.n++
	tap := fmt.Sprintf("tap%d", s.n)
	s.ns.MustIP(t, "tuntap", "add", "dev", tap, "mode", "tap")
	s.ns.MustIP(t, "link", "set", tap, "master", "br0")
	s.ns.MustIP(t, "link", "set", tap, "up")
	console := filepath.Join(t.TempDir(), "console.log")
	args := []string{"-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1", "-nographic", "-no-reboot", "-boot", "n",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + vmMAC,
		"-serial", "file:" + console, "-monitor", "none", "-display", "none"}
	if firmware == "uefi" {
		args = append(args, "-bios", ovmf(t))
	}
	cmd := s.ns.Command("qemu-system-x86_64", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &vm{cmd: cmd, console: console, started: time.Now(), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(v.exited) }()
	t.Cleanup(func() {
		// QEMU is ours: killed by its PID (`ip netns exec` execs it).
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-v.exited
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("--- VM console:\n%s", netnstest.Tail(string(b), 6000))
		}
	})
	return v
}

func (v *vm) output() string {
	b, _ := os.ReadFile(v.console)
	return string(b)
}

func ovmf(t *testing.T) string {
	for _, p := range []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("needs OVMF (apt-get install ovmf) for the UEFI boot")
	return ""
}

func waitFor(t *testing.T, timeout time.Duration, what string, r *replica, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; coordinator output:\n%s", timeout, what, netnstest.Tail(r.proc.Output(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// registered waits for the VM's host to appear with its MAC and a memory size that is the
// VM's 1024 MiB less what the firmware and kernel keep.
func registered(t *testing.T, api *client.Client, r *replica, infraID string, v *vm) v1.Host {
	t.Helper()
	var host v1.Host
	waitFor(t, 5*time.Minute, "the VM's agent to register", r, func() bool {
		l, err := api.ListHosts(context.Background(), client.ListOptions{InfraID: infraID})
		if err != nil {
			return false
		}
		for _, h := range l.Items {
			for _, nic := range h.NICs {
				if nic.MAC == vmMAC {
					host = h
					return true
				}
			}
		}
		return false
	})
	t.Logf("VM start -> host %s registered: %v", host.ID, time.Since(v.started).Round(100*time.Millisecond))
	if m, err := api.GetMachine(context.Background(), vmMAC); err == nil {
		for _, e := range m.History {
			if e.Time.After(v.started.Add(-time.Second)) {
				t.Logf("  +%5.1fs %s %s", e.Time.Sub(v.started).Seconds(), e.Kind, e.Detail)
			}
		}
	}
	if host.MemoryBytes < 900<<20 || host.MemoryBytes > 1024<<20 {
		t.Errorf("host memory %d bytes, want the VM's 1024 MiB less the kernel's share", host.MemoryBytes)
	}
	if host.State != v1.HostDiscovered {
		t.Errorf("host state %s, want discovered (a bare-metal infra without auto-accept rules)", host.State)
	}
	return host
}

func bootKinds(m *v1.Machine) string {
	var kinds []string
	for _, e := range m.History {
		kinds = append(kinds, e.Kind)
	}
	return strings.Join(kinds, ",")
}

// TestPXEBoot: one coordinator with its boot services on a segment; a diskless VM's firmware
// (iPXE ROM under BIOS, OVMF under UEFI) gets our iPXE binary over TFTP, the chained iPXE
// its script over HTTP, then the kernel and initrd; the image's agent registers; the
// machine's boot history shows every step. Then the machine is marked installed (next boot:
// disk) and a reboot leaves the network boot at once.
func TestPXEBoot(t *testing.T) {
	require(t)
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			seg := newSegment(t)
			r := seg.startReplica("c1", "10.78.0.1", nil, true)
			api := r.api(r.adminToken(t))
			var infra *v1.Infra
			waitFor(t, 30*time.Second, "the API", r, func() bool {
				var err error
				infra, err = api.CreateInfra(context.Background(), v1.CreateInfraRequest{Name: ptr("rack"), Kind: ptr("baremetal")})
				return err == nil
			})
			v := seg.bootVM(t, fw)
			host := registered(t, api, r, infra.ID, v)
			m, err := api.GetMachine(context.Background(), vmMAC)
			if err != nil {
				t.Fatal(err)
			}
			kinds := bootKinds(m)
			for _, want := range []string{"dhcp.offer", "tftp.sent", "boot.script", "boot.kernel", "boot.initrd", "agent.registered"} {
				if !strings.Contains(kinds, want) {
					t.Errorf("boot history %s lacks %s", kinds, want)
				}
			}
			if m.HostID != host.ID || m.State != "registered" || m.LeaseIP == "" {
				t.Errorf("machine %+v, want registered as %s with a lease", m, host.ID)
			}

			// Installed: the next boot leaves the network boot.
			if _, err := api.SetMachineBoot(context.Background(), vmMAC, v1.SetMachineBootRequest{NextBoot: ptr("disk")}); err != nil {
				t.Fatal(err)
			}
			_ = syscall.Kill(v.cmd.Process.Pid, syscall.SIGKILL)
			<-v.exited
			again := seg.bootVM(t, fw)
			waitFor(t, 3*time.Minute, "the VM to leave the network boot", r, func() bool {
				m, err := api.GetMachine(context.Background(), vmMAC)
				return err == nil && strings.Contains(bootKinds(m), "boot.next") && strings.HasSuffix(bootKinds(m), "boot.script") &&
					m.History[len(m.History)-1].Detail == "disk exit"
			})
			// iPXE's exit hands back to the firmware, which finds nothing else to boot.
			waitFor(t, 2*time.Minute, "the firmware after iPXE's exit", r, func() bool {
				out := again.output()
				return strings.Contains(out, "No bootable device") || strings.Contains(out, "BdsDxe: failed to load") ||
					strings.Contains(out, "Boot Failed") || strings.Contains(out, "UEFI Interactive Shell") || strings.Contains(out, "Shell>")
			})
			if strings.Contains(again.output(), "deployme-init") {
				t.Error("the installed machine booted the live image again")
			}
		})
	}
}

// TestPXEBootSurvivesAReplica: two replicas serve the boot segment (a third holds the Raft
// quorum from elsewhere); the first is killed before the VM starts; the VM still boots from
// the second and registers.
func TestPXEBootSurvivesAReplica(t *testing.T) {
	require(t)
	seg := newSegment(t)
	c1 := seg.startReplica("c1", "10.78.0.1", nil, true)
	token := c1.adminToken(t)
	api1 := c1.api(token)
	waitFor(t, 30*time.Second, "the first replica", c1, func() bool {
		_, err := api1.Members(context.Background())
		return err == nil
	})
	c2 := seg.startReplica("c2", "10.78.0.2", c1, true)
	c3 := seg.startReplica("c3", "10.78.0.3", c1, false)
	waitFor(t, 60*time.Second, "three voters", c1, func() bool {
		l, err := api1.Members(context.Background())
		if err != nil || len(l.Items) != 3 {
			return false
		}
		for _, m := range l.Items {
			if !m.Voter {
				return false
			}
		}
		return true
	})
	var infra *v1.Infra
	waitFor(t, 30*time.Second, "the infra", c1, func() bool {
		var err error
		infra, err = api1.CreateInfra(context.Background(), v1.CreateInfraRequest{Name: ptr("rack"), Kind: ptr("baremetal")})
		return err == nil
	})
	c1.proc.Kill()
	api2 := c2.api(token)
	waitFor(t, 30*time.Second, "a leader among the other two", c2, func() bool {
		_, err := api2.GetInfra(context.Background(), infra.ID)
		return err == nil
	})
	v := seg.bootVM(t, "bios")
	first := registered(t, api2, c2, infra.ID, v)

	// The live image keeps no identity: booted again, the machine registers with a new key
	// and gets its host back; no second host appears.
	_ = syscall.Kill(v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.exited
	again := seg.bootVM(t, "bios")
	waitFor(t, 5*time.Minute, "the rebooted VM to register again", c2, func() bool {
		m, err := api2.GetMachine(context.Background(), vmMAC)
		return err == nil && strings.Count(bootKinds(m), "agent.registered") >= 2
	})
	l, err := api2.ListHosts(context.Background(), client.ListOptions{InfraID: infra.ID})
	if err != nil {
		t.Fatal(err)
	}
	if l.Total != 1 || l.Items[0].ID != first.ID {
		t.Errorf("after a reboot into the live image: %d host(s) %+v, want host %s alone", l.Total, l.Items, first.ID)
	}
	t.Logf("second boot -> registered again as %s: %v", first.ID, time.Since(again.started).Round(100*time.Millisecond))
	_ = c3
}
