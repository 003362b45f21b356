// Command init is PID 1 of the deployme netboot image (images/README.md): it mounts the
// kernel's file systems, loads the image's NIC drivers, gets an address by DHCP and runs the
// agent, restarting it whenever it exits, so that a PXE-booted machine registers with the
// coordinators as a discovered host (DESIGN.md section 9).
//
// Its settings come from the kernel command line (cmdline.go). It prints progress to the
// console as "deployme-init: ..." lines, which operators and tests follow. PID 1 must never
// exit (the kernel panics), so every failure is reported and waited out or retried.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// verbose is deployme.debug; set once, before any goroutine starts.
var verbose bool

// logf prints one console line. Plain lines on the console, not a structured logger: the
// console is the only log a netbooted machine has, and its lines are the markers tests and
// operators grep for.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "deployme-init: "+format+"\n", args...)
}

func debugf(format string, args ...any) {
	if verbose {
		logf(format, args...)
	}
}

func main() {
	if os.Getpid() != 1 {
		// Run anywhere else, it would mount file systems and load modules on a live host.
		fmt.Fprintln(os.Stderr, "deployme-init: must run as PID 1 of the netboot image")
		os.Exit(2)
	}
	// Reaping starts first: orphans come to PID 1 whatever happens next, a halt included.
	r := newReaper()
	defer func() {
		if p := recover(); p != nil {
			halt(fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
	}()
	start := time.Now()
	mountAll()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		halt(fmt.Errorf("read the kernel command line: %w", err))
	}
	cfg, err := parseCmdline(string(cmdline))
	verbose = cfg.Debug
	for _, w := range cfg.Warnings {
		logf("%s", w)
	}
	if err != nil {
		halt(err)
	}
	if cfg.Hostname != "" {
		setHostname(cfg.Hostname)
	}
	loadAllModules()
	waitForEntropy()

	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		halt(fmt.Errorf("netlink: %w", err))
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo) // the agent talks to local services on 127.0.0.1
	}
	ctx := context.Background()
	up := dhcpUp(ctx, h, cfg)
	logf("dhcp %s via %s", up.addr.Addr, up.nic.Name)
	logf("network: %s", describe(up.addr))
	if cfg.Hostname == "" {
		name := up.addr.Hostname
		if name == "" {
			name = macHostname(up.nic.MAC)
		}
		setHostname(name)
	}
	// From here on, up belongs to keepLease.
	go func() {
		defer func() {
			if p := recover(); p != nil {
				logf("dhcp renewals stopped: panic: %v", p)
			}
		}()
		keepLease(ctx, h, up)
	}()
	logf("up in %s", time.Since(start).Round(time.Millisecond))
	superviseAgent(r, cfg)
}

// mountAll mounts what the agent and init need; a mount that is already there is fine.
func mountAll() {
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
		data           string
	}{
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/tmp", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			logf("mkdir %s: %v", m.target, err)
			continue
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			logf("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
}

func setHostname(name string) {
	if err := unix.Sethostname([]byte(name)); err != nil {
		logf("set hostname %s: %v", name, err)
		return
	}
	// /etc/hostname in the image is a placeholder; keep it in step for whoever reads it.
	_ = os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644)
	logf("hostname %s", name)
}

func loadAllModules() {
	start := time.Now()
	b, err := os.ReadFile(modulesDir + "/" + orderFile)
	if err != nil {
		logf("no module list: %v", err)
		return
	}
	names, err := parseOrder(string(b))
	if err != nil {
		logf("module list: %v", err)
		return
	}
	loaded, failed := loadModules(names, func(name string) error {
		t := time.Now()
		err := finitModule(name)
		if err == nil {
			debugf("module %s loaded in %s", name, time.Since(t).Round(time.Millisecond))
		}
		return err
	})
	for _, f := range failed {
		logf("module %s: %v", f.Name, f.Err)
	}
	logf("modules loaded (%d of %d in %s)", loaded, len(names), time.Since(start).Round(time.Millisecond))
}

// waitForEntropy says why the machine seems stuck when the kernel's random pool is not yet
// seeded: Go's crypto/rand (DHCP transaction IDs, TLS) blocks until it is, for minutes on a
// machine with neither RDRAND nor a hardware RNG.
func waitForEntropy() {
	buf := make([]byte, 1)
	if _, err := unix.Getrandom(buf, unix.GRND_NONBLOCK); err == nil {
		return
	}
	logf("waiting for the kernel's random pool (no RDRAND, no hardware RNG?)")
	start := time.Now()
	for {
		if _, err := unix.Getrandom(buf, 0); err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	logf("random pool ready after %s", time.Since(start).Round(time.Millisecond))
}

// halt reports a failure init cannot get past and then waits forever (the reaper goes on
// reaping): exiting would panic the kernel, and the message would scroll away in a reboot
// loop. Sleeping, not an empty select: the runtime would call that a deadlock and exit.
func halt(err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		logf("fatal: %s", line)
	}
	logf("halted: fix the boot configuration and power-cycle the machine")
	for {
		time.Sleep(time.Hour)
	}
}
