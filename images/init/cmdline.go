package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// bootConfig is what the kernel command line tells init. The iPXE script the coordinator
// serves writes it (DESIGN.md section 9).
type bootConfig struct {
	// Coordinators are gRPC addresses, host:port (deployme.coordinator=a:9090,b:9090).
	Coordinators []string
	// JoinToken registers the host (deployme.join_token=).
	JoinToken string
	// CAHash pins the coordinators' agent CA (deployme.ca_hash=sha256:<hex>); the agent
	// checks its form.
	CAHash string
	// Hostname is set before anything else (deployme.hostname=); empty means DHCP's, or
	// one made from the MAC address.
	Hostname string
	// Labels are passed to the agent's --labels (deployme.labels=rack=r12,zone=a).
	Labels string
	// BootIF is the NIC the firmware booted from (BOOTIF=01-aa-bb-cc-dd-ee-ff, as iPXE's
	// ${net0/mac:hexhyp} and pxelinux write it); it is tried first for DHCP.
	BootIF net.HardwareAddr
	// Debug makes init and the agent verbose (deployme.debug).
	Debug bool
	// Warnings are parameters that were ignored, for the console.
	Warnings []string
}

// errNoCoordinator: without a coordinator address there is nothing for the agent to do.
var errNoCoordinator = errors.New("no deployme.coordinator= on the kernel command line")

// splitCmdline splits a kernel command line into parameters the way the kernel does:
// on spaces outside double quotes, with the quotes removed (param="a b" is param=a b).
func splitCmdline(s string) []string {
	var params []string
	var cur strings.Builder
	inQuote, started := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			started = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if started {
				params = append(params, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		params = append(params, cur.String())
	}
	return params
}

// parseCmdline reads init's parameters from /proc/cmdline's content. Like the kernel, it
// treats '-' and '_' in names alike and lets a later parameter win over an earlier one.
func parseCmdline(s string) (bootConfig, error) {
	var c bootConfig
	var coordinators string
	for _, p := range splitCmdline(s) {
		name, value, hasValue := strings.Cut(p, "=")
		name = strings.ReplaceAll(name, "-", "_")
		switch name {
		case "deployme.coordinator":
			coordinators = value
		case "deployme.join_token":
			c.JoinToken = value
		case "deployme.ca_hash":
			c.CAHash = value
		case "deployme.hostname":
			c.Hostname = value
		case "deployme.labels":
			c.Labels = value
		case "deployme.debug":
			on, ok := parseBool(value, hasValue)
			if !ok {
				c.Warnings = append(c.Warnings, fmt.Sprintf("deployme.debug=%s is not a boolean; debug is on", value))
			}
			c.Debug = on
		case "deployme.initrd_sha256":
			// Linux 6.1 frees the initrd once unpacked and cannot give it back
			// (/sys/firmware/initrd with retain_initrd came in 6.3): say so rather than
			// pretend to have checked.
			c.Warnings = append(c.Warnings, "deployme.initrd_sha256 is ignored: this kernel cannot give the initrd back to check it")
		case "BOOTIF":
			mac, err := parseBootIF(value)
			if err != nil {
				c.Warnings = append(c.Warnings, fmt.Sprintf("BOOTIF=%s ignored: %v", value, err))
				continue
			}
			c.BootIF = mac
		default:
			if strings.HasPrefix(name, "deployme.") {
				c.Warnings = append(c.Warnings, "unknown parameter "+name+" ignored")
			}
		}
	}
	var err error
	if c.Coordinators, err = parseCoordinators(coordinators); err != nil {
		return c, err
	}
	if c.Hostname != "" && !validHostname(c.Hostname) {
		c.Warnings = append(c.Warnings, fmt.Sprintf("deployme.hostname=%s is not a valid host name; ignored", c.Hostname))
		c.Hostname = ""
	}
	return c, nil
}

// parseBool reads a flag-like parameter: present without a value means on. ok is false
// for a value that is not a boolean (then it counts as on: the operator asked for it).
func parseBool(value string, hasValue bool) (on, ok bool) {
	if !hasValue {
		return true, true
	}
	switch strings.ToLower(value) {
	case "1", "y", "yes", "true", "on":
		return true, true
	case "0", "n", "no", "false", "off":
		return false, true
	}
	return true, false
}

// parseCoordinators checks host:port[,host:port]; the agent dials them as given.
func parseCoordinators(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("deployme.coordinator: %q: %w", a, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return nil, fmt.Errorf("deployme.coordinator: %q is not host:port", a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errNoCoordinator
	}
	return out, nil
}

// parseBootIF reads pxelinux's form, "01-" (Ethernet's ARP hardware type) then the MAC
// with dashes, and also a plain MAC address.
func parseBootIF(s string) (net.HardwareAddr, error) {
	if t, rest, ok := strings.Cut(s, "-"); ok && len(t) == 2 && len(rest) == 17 {
		if t != "01" {
			return nil, fmt.Errorf("hardware type %s is not Ethernet", t)
		}
		s = rest
	}
	mac, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil {
		return nil, err
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("%s is not an Ethernet address", s)
	}
	return mac, nil
}

// validHostname accepts what sethostname and other hosts will take: RFC 1123 labels.
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
