package httpboot

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
)

const (
	testBase   = "http://10.0.0.1:8080"
	testInitrd = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
)

// ipxeFields splits a line the way iPXE does: on C isspace bytes, after settings
// expansion (which checkScript rules out by refusing "${").
func ipxeFields(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t\n\v\f\r", r) })
}

// decode is what the netboot /init does with a value: RFC 3986 percent-decoding.
func decode(s string) (string, error) { return url.PathUnescape(s) }

// checkScript verifies a rendered script against the only shapes the template can produce
// for m: the same commands on the same lines, every token inert for iPXE and the kernel, and
// every value decoding back to exactly the Machine's. It is the injection oracle of the
// tests and of FuzzScript.
func checkScript(script string, m Machine, mac string) error {
	if !strings.HasSuffix(script, "\n") || strings.ContainsAny(script, "\r\x00") {
		return errors.New("script must end in a newline and hold no CR or NUL")
	}
	lines := strings.Split(strings.TrimSuffix(script, "\n"), "\n")
	var cmds [][]string
	for i, l := range lines {
		f := ipxeFields(l)
		for _, tok := range f {
			// iPXE expands "${" before anything else, ends a command at a "||", "&&" or
			// ";" token and starts a comment at a token beginning with "#"; the kernel
			// honours double quotes. None of that may come from a value.
			if strings.Contains(tok, "$") || tok == "||" || tok == "&&" || tok == ";" ||
				(tok[0] == '#' && i > 0) || strings.ContainsAny(tok, "\"'\\`") {
				return fmt.Errorf("line %d: token %q is not inert", i+1, tok)
			}
		}
		cmds = append(cmds, f)
	}
	want := []string{"#!ipxe", "echo"}
	switch {
	case m.Next == NextAgent:
		want = append(want, "kernel", "initrd", "boot")
	case m.DiskExit == DiskExitSanboot:
		want = append(want, "sanboot")
	case m.DiskExit == DiskExitChain:
		want = append(want, "chain")
	default:
		want = append(want, "exit")
	}
	var got []string
	for _, c := range cmds {
		if len(c) == 0 {
			return errors.New("empty line")
		}
		got = append(got, c[0])
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("commands %q, want %q", got, want)
	}
	if len(cmds[0]) != 1 {
		return fmt.Errorf("first line %q", lines[0])
	}
	echo := cmds[1]
	next := "next=" + m.Next
	if len(echo) != 5 || echo[1] != "deployme:" || echo[2] != mac || !strings.HasPrefix(echo[3], "hostname=") || echo[4] != next {
		return fmt.Errorf("echo line %q", lines[1])
	}
	if h, err := decode(strings.TrimPrefix(echo[3], "hostname=")); err != nil || h != m.Hostname {
		return fmt.Errorf("echoed hostname decodes to %q, %v; want %q", h, err, m.Hostname)
	}
	switch want[2] {
	case "exit":
		if len(cmds[2]) != 1 {
			return fmt.Errorf("exit line %q", lines[2])
		}
	case "sanboot":
		if !slices.Equal(cmds[2], []string{"sanboot", "--no-describe", "--drive", "0x80"}) {
			return fmt.Errorf("sanboot line %q", lines[2])
		}
	case "chain":
		if !slices.Equal(cmds[2], []string{"chain", m.DiskChain}) {
			return fmt.Errorf("chain line %q", lines[2])
		}
	case "kernel":
		return checkAgent(cmds, m, mac)
	}
	return nil
}

func checkAgent(cmds [][]string, m Machine, mac string) error {
	kernel, initrd, boot := cmds[2], cmds[3], cmds[4]
	if len(boot) != 1 || !slices.Equal(initrd, []string{"initrd", testBase + "/boot/initrd.img?mac=" + mac}) {
		return fmt.Errorf("initrd/boot lines %q %q", initrd, boot)
	}
	keys := []string{"initrd", "console", "console", "deployme.coordinator", "deployme.join_token",
		"deployme.ca_hash", "deployme.initrd_sha256", "deployme.boot_mac", "deployme.hostname"}
	if len(kernel) != 2+len(keys) || kernel[1] != testBase+"/boot/vmlinuz?mac="+mac {
		return fmt.Errorf("kernel line %q", kernel)
	}
	vals := map[string]string{}
	for i, arg := range kernel[2:] {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k != keys[i] {
			return fmt.Errorf("kernel argument %d is %q, want key %s", i, arg, keys[i])
		}
		if k == "deployme.coordinator" {
			var cs []string
			for _, c := range strings.Split(v, ",") {
				d, err := decode(c)
				if err != nil {
					return err
				}
				cs = append(cs, d)
			}
			if !slices.Equal(cs, m.Coordinators) {
				return fmt.Errorf("coordinators decode to %q, want %q", cs, m.Coordinators)
			}
			continue
		}
		d, err := decode(v)
		if err != nil {
			return fmt.Errorf("%s=%q does not decode: %v", k, v, err)
		}
		vals[k] = d
	}
	want := map[string]string{
		"initrd": "initrd.img", "console": "ttyS0", "deployme.join_token": m.JoinToken,
		"deployme.ca_hash": m.CAHash, "deployme.initrd_sha256": testInitrd,
		"deployme.boot_mac": mac, "deployme.hostname": m.Hostname,
	}
	for k, w := range want {
		if vals[k] != w {
			return fmt.Errorf("%s decodes to %q, want %q", k, vals[k], w)
		}
	}
	return nil
}

var hostile = []string{
	"node\nshell",
	"node\n  shell\n",
	"${net0/ip}",
	"$${x}",
	"a b c",
	`"quoted" 'single'`,
	"x; shell",
	"x || shell",
	"x && shell",
	"# comment",
	"a\\nb",
	"a\rb\tc\vd\fe",
	"%00%0a",
	"init=/bin/sh",
	"-- init=/bin/sh",
	"\x00\xff\xfe",
	"ünïcödé",
	"`reboot`",
}

// TestScriptInjection renders hostile values into every field that reaches the script and
// checks, line by line, that none adds a command, an argument or an expansion.
func TestScriptInjection(t *testing.T) {
	mac, _ := net.ParseMAC(testMAC)
	for _, v := range hostile {
		base := agentMachine(mac)
		variants := map[string]Machine{}
		m := base
		m.Hostname = v
		variants["hostname"] = m
		m = base
		m.JoinToken = v
		variants["token"] = m
		m = base
		m.CAHash = v
		variants["ca hash"] = m
		m = base
		m.Coordinators = []string{v, "x,y:1", v}
		variants["coordinators"] = m
		variants["disk hostname"] = Machine{MAC: mac, Next: NextDisk, Hostname: v}
		for field, m := range variants {
			t.Run(fmt.Sprintf("%s=%q", field, v), func(t *testing.T) {
				script, _, err := render(m, mac, testBase, testInitrd)
				if err != nil {
					t.Fatalf("render: %v", err)
				}
				if err := checkScript(string(script), m, testMAC); err != nil {
					t.Errorf("%v\n%s", err, script)
				}
			})
		}
	}
}

// TestScriptRefused: machines that cannot be rendered safely are refused, not patched up.
func TestScriptRefused(t *testing.T) {
	mac, _ := net.ParseMAC(testMAC)
	agent := agentMachine(mac)
	with := func(f func(*Machine)) Machine { m := agent; f(&m); return m }
	disk := func(exit, chain string) Machine {
		return Machine{MAC: mac, Next: NextDisk, DiskExit: exit, DiskChain: chain}
	}
	tests := map[string]Machine{
		"empty next":          with(func(m *Machine) { m.Next = "" }),
		"unknown next":        with(func(m *Machine) { m.Next = "agent\nshell" }),
		"no coordinators":     with(func(m *Machine) { m.Coordinators = nil }),
		"empty coordinator":   with(func(m *Machine) { m.Coordinators = []string{"a:1", ""} }),
		"no token":            with(func(m *Machine) { m.JoinToken = "" }),
		"cmdline too long":    with(func(m *Machine) { m.JoinToken = strings.Repeat("\n", 700) }),
		"unknown disk exit":   disk("reboot", ""),
		"chain no URL":        disk(DiskExitChain, ""),
		"chain expansion":     disk(DiskExitChain, "http://${next-server}/x"),
		"chain space":         disk(DiskExitChain, "http://a/x shell"),
		"chain newline":       disk(DiskExitChain, "http://a/x\nshell"),
		"chain quote":         disk(DiskExitChain, `http://a/"x`),
		"chain semicolon":     disk(DiskExitChain, "http://a/x;shell"),
		"chain pipe":          disk(DiskExitChain, "http://a/x||shell"),
		"chain relative":      disk(DiskExitChain, "local.ipxe"),
		"chain option":        disk(DiskExitChain, "--autofree"),
		"chain file scheme":   disk(DiskExitChain, "file:///etc/passwd"),
		"chain userinfo":      disk(DiskExitChain, "http://u:p@a/x"),
		"chain fragment":      disk(DiskExitChain, "http://a/x#y"),
		"chain too long":      disk(DiskExitChain, "http://a/"+strings.Repeat("x", maxChainURL)),
		"disk exit uppercase": disk("EXIT", ""),
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			script, _, err := render(m, mac, testBase, testInitrd)
			if !errors.Is(err, ErrInvalidMachine) {
				t.Errorf("render = %v, %q; want ErrInvalidMachine", err, script)
			}
		})
	}
}

func TestEscapeValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"node-01.example_x~", "node-01.example_x~"},
		{"10.0.0.1:9090", "10.0.0.1:9090"},
		{"[fd00::1]:9090", "[fd00::1]:9090"},
		{"a b", "a%20b"},
		{"${x}", "%24%7Bx%7D"},
		{"100%", "100%25"},
		{"a,b", "a%2Cb"},
		{"a\nb", "a%0Ab"},
		{"tok/+=", "tok%2F%2B%3D"},
		{"", ""},
	} {
		if got := escapeValue(tc.in); got != tc.want {
			t.Errorf("escapeValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if d, err := decode(escapeValue(tc.in)); err != nil || d != tc.in {
			t.Errorf("decode(escapeValue(%q)) = %q, %v", tc.in, d, err)
		}
	}
}

// FuzzScript renders machines with arbitrary field values: rendering never panics, refuses
// only with ErrInvalidMachine, and whatever it renders has exactly the template's lines and
// commands, with every value decoding back to the input (no injection, no loss).
func FuzzScript(f *testing.F) {
	f.Add(uint8(0), "node-01", "dpj_token", "sha256:ab", "10.0.0.1:9090", "[fd00::1]:9090", "", "")
	f.Add(uint8(1), "", "", "", "", "", "exit", "")
	f.Add(uint8(1), "n", "", "", "", "", "sanboot", "")
	f.Add(uint8(1), "n", "", "", "", "", "chain", "http://a/b?c=d&e=f")
	f.Add(uint8(2), "x", "t", "", "a:1", "", "", "")
	for _, h := range hostile {
		f.Add(uint8(0), h, h, h, h, h, h, h)
		f.Add(uint8(1), h, h, h, h, h, "chain", "http://a/"+h)
	}
	f.Fuzz(func(t *testing.T, sel uint8, hostname, token, caHash, c1, c2, diskExit, chain string) {
		mac, _ := net.ParseMAC(testMAC)
		m := Machine{MAC: mac, Hostname: hostname, JoinToken: token, CAHash: caHash,
			Coordinators: []string{c1, c2}, DiskExit: diskExit, DiskChain: chain}
		// Mostly valid Next values, so the fuzzer explores the rendering, not the refusal.
		switch sel % 4 {
		case 0, 1:
			m.Next = NextAgent
		case 2:
			m.Next = NextDisk
		default:
			m.Next = hostname
		}
		if sel&0x80 != 0 {
			m.Coordinators = m.Coordinators[:1]
		}
		script, _, err := render(m, mac, testBase, testInitrd)
		if err != nil {
			if !errors.Is(err, ErrInvalidMachine) {
				t.Fatalf("render error %v does not wrap ErrInvalidMachine", err)
			}
			return
		}
		if m.Next == NextDisk && m.DiskExit == "" {
			m.DiskExit = DiskExitExit
		}
		if err := checkScript(string(script), m, testMAC); err != nil {
			t.Fatalf("%v\n%s", err, script)
		}
	})
}
