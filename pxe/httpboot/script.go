package httpboot

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"text/template"
)

// ErrInvalidMachine: the backend's answer cannot be rendered into a safe script (unknown
// Next or DiskExit, no coordinator, an unusable chain URL, a command line too long).
var ErrInvalidMachine = errors.New("httpboot: machine cannot be booted as described")

// Next values.
const (
	NextAgent = "agent"
	NextDisk  = "disk"
)

// DiskExit values.
const (
	DiskExitExit    = "exit"
	DiskExitSanboot = "sanboot"
	DiskExitChain   = "chain"
)

// maxCmdline is Linux's COMMAND_LINE_SIZE on x86 (2048) minus its NUL: a longer line is
// truncated by the kernel, silently dropping the last arguments.
const maxCmdline = 2047

// maxChainURL bounds DiskChain; iPXE has no hard limit, but a URL this long is a mistake.
const maxChainURL = 1024

// The script template. It receives a view, never a Machine: every field was escaped or
// validated by newView, so no template edit can place a raw inventory value in the script.
// Each line is one iPXE command; the kernel line's arguments are fixed keys with values.
const scriptText = `#!ipxe
{{- if .Agent}}
echo deployme: {{.MAC}} hostname={{.Hostname}} next=agent
kernel {{.BaseURL}}/boot/vmlinuz?mac={{.MAC}} {{.Cmdline}}
initrd {{.BaseURL}}/boot/initrd.img?mac={{.MAC}}
boot
{{- else}}
echo deployme: {{.MAC}} hostname={{.Hostname}} next=disk
{{- if eq .DiskExit "sanboot"}}
sanboot --no-describe --drive 0x80
{{- else if eq .DiskExit "chain"}}
chain {{.DiskChain}}
{{- else}}
exit
{{- end}}
{{- end}}
`

var scriptTmpl = template.Must(template.New("ipxe").Option("missingkey=error").Parse(scriptText))

// view is the template's input: escaped, validated values only.
type view struct {
	Agent     bool
	MAC       string // net.HardwareAddr.String(): hex digits and colons
	Hostname  string // percent-encoded
	BaseURL   string // validated at New
	Cmdline   string // built by cmdline from percent-encoded values
	DiskExit  string // one of the DiskExit values
	DiskChain string // validated by chainURL
}

// render returns the iPXE script for m and a short description of it for Backend.Event.
// initrdSum is the hex SHA-256 of the initrd, only needed for the agent.
func render(m Machine, mac net.HardwareAddr, baseURL, initrdSum string) ([]byte, string, error) {
	v, detail, err := newView(m, mac, baseURL, initrdSum)
	if err != nil {
		return nil, "", err
	}
	var b bytes.Buffer
	if err := scriptTmpl.Execute(&b, v); err != nil {
		return nil, "", fmt.Errorf("httpboot: render: %w", err)
	}
	return b.Bytes(), detail, nil
}

func newView(m Machine, mac net.HardwareAddr, baseURL, initrdSum string) (view, string, error) {
	v := view{MAC: mac.String(), Hostname: escapeValue(m.Hostname), BaseURL: baseURL}
	switch m.Next {
	case NextAgent:
		v.Agent = true
		line, err := cmdline(m, v.MAC, initrdSum)
		if err != nil {
			return view{}, "", err
		}
		v.Cmdline = line
		return v, NextAgent, nil
	case NextDisk:
		switch m.DiskExit {
		case "", DiskExitExit:
			v.DiskExit = DiskExitExit
		case DiskExitSanboot:
			v.DiskExit = DiskExitSanboot
		case DiskExitChain:
			u, err := chainURL(m.DiskChain)
			if err != nil {
				return view{}, "", err
			}
			v.DiskExit, v.DiskChain = DiskExitChain, u
		default:
			return view{}, "", fmt.Errorf("%w: unknown disk exit %q", ErrInvalidMachine, m.DiskExit)
		}
		return v, NextDisk + " " + v.DiskExit, nil
	default:
		return view{}, "", fmt.Errorf("%w: unknown next boot %q", ErrInvalidMachine, m.Next)
	}
}

// cmdline builds the live image's kernel command line. The keys are fixed; every value is
// percent-encoded by escapeValue (coordinators one by one, joined with ","), which the
// netboot /init must undo. The initrd digest and the MAC are produced here, not taken from
// the backend, and need no encoding.
func cmdline(m Machine, mac, initrdSum string) (string, error) {
	if len(m.Coordinators) == 0 {
		return "", fmt.Errorf("%w: no coordinator address", ErrInvalidMachine)
	}
	if m.JoinToken == "" {
		return "", fmt.Errorf("%w: no join token", ErrInvalidMachine)
	}
	coords := make([]string, len(m.Coordinators))
	for i, c := range m.Coordinators {
		if c == "" {
			return "", fmt.Errorf("%w: empty coordinator address", ErrInvalidMachine)
		}
		coords[i] = escapeValue(c)
	}
	line := strings.Join([]string{
		"initrd=initrd.img", // the EFI stub loads the initrd by this name from iPXE
		"console=tty0",
		"console=ttyS0",
		"deployme.coordinator=" + strings.Join(coords, ","),
		"deployme.join_token=" + escapeValue(m.JoinToken),
		"deployme.ca_hash=" + escapeValue(m.CAHash),
		"deployme.initrd_sha256=" + initrdSum,
		"deployme.boot_mac=" + mac,
		"deployme.hostname=" + escapeValue(m.Hostname),
	}, " ")
	if len(line) > maxCmdline {
		return "", fmt.Errorf("%w: kernel command line of %d bytes exceeds %d", ErrInvalidMachine, len(line), maxCmdline)
	}
	return line, nil
}

// safeValueByte reports whether c may appear unencoded in a kernel command-line value or an
// echo argument: RFC 3986 unreserved characters plus ":" (host:port, "sha256:") and "[]"
// (IPv6 literals). None of these means anything to iPXE (which expands "${", splits on
// white space, treats "||", "&&", ";" tokens and a leading "#" specially) or to the kernel
// (which splits on white space and honours double quotes).
func safeValueByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-._~:[]", c) >= 0
}

// escapeValue percent-encodes every byte outside safeValueByte, "%" itself included, so any
// value survives as one argument and decodes back exactly (RFC 3986 percent-decoding).
// Encoding instead of refusing keeps a machine with an odd inventory hostname bootable.
func escapeValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safeValueByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// safeURLByte is the allowlist for URLs placed in the script as is (BaseURL, DiskChain): a
// URL cannot be percent-encoded again without changing it, so it is refused instead when it
// holds anything iPXE could interpret ("$", quotes, backslash, white space, "#", ";", "|").
// "&" stays allowed for query strings: iPXE only treats the whole token "&&" specially.
func safeURLByte(c byte) bool {
	return safeValueByte(c) || strings.IndexByte("/?=&%+,@", c) >= 0
}

// checkURL validates an absolute URL with one of schemes for verbatim use in the script.
func checkURL(raw string, schemes ...string) (*url.URL, error) {
	for i := 0; i < len(raw); i++ {
		if !safeURLByte(raw[i]) {
			return nil, fmt.Errorf("URL has byte %#x outside the allowed set", raw[i])
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("URL must be %s://host/...", strings.Join(schemes, "|"))
	}
	return u, nil
}

func chainURL(raw string) (string, error) {
	if len(raw) > maxChainURL {
		return "", fmt.Errorf("%w: chain URL longer than %d bytes", ErrInvalidMachine, maxChainURL)
	}
	if _, err := checkURL(raw, "http", "https", "tftp"); err != nil {
		return "", fmt.Errorf("%w: chain URL: %w", ErrInvalidMachine, err)
	}
	return raw, nil
}
