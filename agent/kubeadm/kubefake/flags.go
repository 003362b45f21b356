package kubefake

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

type flagKind int

const (
	stringFlag flagKind = iota
	boolFlag
	sliceFlag // pflag StringSlice: comma-separated, accumulates over repeats
	durationFlag
	intFlag // pflag Int: strconv.ParseInt with base 0
)

// flagSpec is one flag the fake accepts, spelt as the real command spells it.
type flagSpec struct {
	name  string
	short string
	kind  flagKind
}

// command describes one simulated subcommand: the flags the fake implements, and the flags
// the real command also has but the fake refuses (so their use reads as "not simulated"
// instead of a misleading "unknown flag"). Flags are checked against kubeadm v1.37 and
// kubectl v1.37; persistent flags of parent commands are listed on each child.
type command struct {
	tool        string
	name        string // "init", "token create", "apply"
	flags       []flagSpec
	unsimulated []string // "name" or "name/short"
	maxArgs     int
}

func (c *command) path() string { return strings.TrimSpace(c.tool + " " + c.name) }

// Flags of kubeadm's root command, inherited by every subcommand (cmd/kubeadm/app/cmd/cmd.go).
var (
	kubeadmRootFlags       = []flagSpec{{name: "rootfs", kind: stringFlag}}
	kubeadmRootUnsimulated = []string{"v/v", "vmodule", "help/h"}
)

var kubeadmCommands = []*command{
	{
		tool: "kubeadm", name: "init",
		flags: []flagSpec{
			{name: "config", kind: stringFlag},
			{name: "skip-token-print", kind: boolFlag},
			{name: "ignore-preflight-errors", kind: sliceFlag},
			{name: "dry-run", kind: boolFlag},
		},
		unsimulated: []string{
			"apiserver-advertise-address", "apiserver-bind-port", "node-name", "certificate-key",
			"cri-socket", "service-cidr", "pod-network-cidr", "service-dns-domain",
			"control-plane-endpoint", "kubernetes-version", "cert-dir", "apiserver-cert-extra-sans",
			"feature-gates", "upload-certs", "skip-certificate-key-print", "patches", "token",
			"token-ttl", "image-repository", "skip-phases",
		},
	},
	{
		tool: "kubeadm", name: "join",
		flags: []flagSpec{
			{name: "config", kind: stringFlag},
			{name: "ignore-preflight-errors", kind: sliceFlag},
			{name: "dry-run", kind: boolFlag},
		},
		unsimulated: []string{
			"node-name", "certificate-key", "apiserver-advertise-address", "apiserver-bind-port",
			"discovery-token", "discovery-token-ca-cert-hash",
			"discovery-token-unsafe-skip-ca-verification", "discovery-file", "tls-bootstrap-token",
			"cri-socket", "token", "control-plane", "patches", "skip-phases",
		},
	},
	{
		tool: "kubeadm", name: "reset",
		flags: []flagSpec{
			{name: "force", short: "f", kind: boolFlag},
			{name: "dry-run", kind: boolFlag},
			{name: "ignore-preflight-errors", kind: sliceFlag},
		},
		unsimulated: []string{"cert-dir", "cleanup-tmp-dir", "kubeconfig", "config", "cri-socket", "skip-phases"},
	},
	{
		tool: "kubeadm", name: "token create", maxArgs: 1,
		flags: []flagSpec{
			{name: "ttl", kind: durationFlag},
			{name: "description", kind: stringFlag},
			{name: "usages", kind: sliceFlag},
			{name: "groups", kind: sliceFlag},
			{name: "kubeconfig", kind: stringFlag},
			{name: "dry-run", kind: boolFlag},
		},
		unsimulated: []string{"config", "print-join-command", "certificate-key"},
	},
	{
		tool: "kubeadm", name: "version",
		flags: []flagSpec{{name: "output", short: "o", kind: stringFlag}},
	},
	{
		// cmd/kubeadm/app/cmd/upgrade/apply.go; the version is checked like kubeadm's
		// ValidateExactArgNumber, so maxArgs only lets it through.
		tool: "kubeadm", name: "upgrade apply", maxArgs: 1 << 10,
		flags: []flagSpec{
			{name: "yes", short: "y", kind: boolFlag},
			{name: "kubeconfig", kind: stringFlag},
		},
		unsimulated: []string{
			"force/f", "dry-run", "config", "etcd-upgrade", "certificate-renewal",
			"ignore-preflight-errors", "patches", "print-config", "feature-gates", "skip-phases",
			"allow-experimental-upgrades", "allow-release-candidate-upgrades",
		},
	},
	{
		// cmd/kubeadm/app/cmd/upgrade/node.go
		tool: "kubeadm", name: "upgrade node",
		flags: []flagSpec{{name: "kubeconfig", kind: stringFlag}},
		unsimulated: []string{
			"dry-run", "config", "etcd-upgrade", "certificate-renewal", "ignore-preflight-errors",
			"patches", "skip-phases",
		},
	},
}

// Real kubeadm subcommands the fake does not simulate at all.
var kubeadmUnsimulatedCommands = []string{
	"certs", "completion", "config", "kubeconfig", "alpha", "help",
	"token list", "token delete", "token generate", "upgrade plan", "upgrade diff",
}

// kubeadmCommandGroups are the kubeadm commands that only hold subcommands.
var kubeadmCommandGroups = []string{"token", "upgrade"}

// kubectl's global flags (a selection: the ones a caller is likely to try).
var (
	// --namespace is only simulated for exec; other commands refuse it (see kubectl).
	kubectlRootFlags = []flagSpec{
		{name: "kubeconfig", kind: stringFlag},
		{name: "namespace", short: "n", kind: stringFlag},
	}
	kubectlRootUnsimulated = []string{
		"context", "cluster", "user", "server/s", "token", "as", "as-group",
		"certificate-authority", "client-certificate", "client-key", "insecure-skip-tls-verify",
		"request-timeout", "tls-server-name", "v/v", "match-server-version", "cache-dir",
		"username", "password", "profile", "warnings-as-errors", "help/h",
	}
)

var kubectlCommands = []*command{
	{
		tool: "kubectl", name: "apply",
		flags: []flagSpec{{name: "filename", short: "f", kind: sliceFlag}},
		unsimulated: []string{
			"kustomize/k", "recursive/R", "dry-run", "server-side", "force", "prune",
			"selector/l", "validate", "output/o", "wait", "timeout", "overwrite", "field-manager",
			"force-conflicts", "grace-period", "cascade", "all", "prune-allowlist",
			"show-managed-fields", "template", "allow-missing-template-keys", "openapi-patch",
		},
	},
	{
		tool: "kubectl", name: "get", maxArgs: 2,
		flags: []flagSpec{{name: "output", short: "o", kind: stringFlag}},
		unsimulated: []string{
			"selector/l", "watch/w", "all-namespaces/A", "show-labels", "label-columns/L",
			"field-selector", "sort-by", "no-headers", "chunk-size", "ignore-not-found", "raw",
			"show-kind", "output-watch-events", "watch-only", "subresource", "filename/f",
			"kustomize/k", "recursive/R", "template", "allow-missing-template-keys",
			"show-managed-fields", "server-print",
		},
	},
	{
		// kubectl/pkg/cmd/drain/drain.go
		tool: "kubectl", name: "drain",
		flags: []flagSpec{
			{name: "force", kind: boolFlag},
			{name: "ignore-daemonsets", kind: boolFlag},
			{name: "delete-emptydir-data", kind: boolFlag},
			{name: "grace-period", kind: intFlag},
			{name: "timeout", kind: durationFlag},
			{name: "pod-selector", kind: stringFlag},
			{name: "disable-eviction", kind: boolFlag},
			{name: "skip-wait-for-delete-timeout", kind: intFlag},
		},
		unsimulated: []string{"delete-local-data", "chunk-size", "dry-run", "selector/l"},
	},
	{
		// kubectl/pkg/cmd/delete/delete_flags.go
		tool: "kubectl", name: "delete",
		flags: []flagSpec{
			{name: "ignore-not-found", kind: boolFlag},
			{name: "timeout", kind: durationFlag},
			{name: "wait", kind: boolFlag},
		},
		unsimulated: []string{
			"all", "all-namespaces/A", "cascade", "field-selector", "filename/f", "force",
			"grace-period", "interactive/i", "kustomize/k", "now", "output/o", "raw",
			"recursive/R", "selector/l", "dry-run",
		},
	},
	{
		// kubectl/pkg/cmd/drain/drain.go (NewCmdUncordon)
		tool: "kubectl", name: "uncordon",
		unsimulated: []string{"dry-run", "selector/l"},
	},
	{
		// kubectl/pkg/cmd/exec/exec.go: everything after "--" is the command.
		tool: "kubectl", name: "exec",
		unsimulated: []string{"container/c", "stdin/i", "tty/t", "quiet/q", "filename/f", "pod-running-timeout"},
	},
}

var kubectlUnsimulatedCommands = []string{
	"create", "expose", "run", "set", "explain", "edit", "rollout", "scale",
	"autoscale", "certificate", "cluster-info", "top", "cordon", "taint",
	"describe", "logs", "attach", "port-forward", "proxy", "cp", "auth", "debug",
	"events", "diff", "patch", "replace", "wait", "kustomize", "label", "annotate",
	"completion", "api-resources", "api-versions", "config", "plugin", "version", "options",
	"help",
}

// parsed is the outcome of parsing one command line.
type parsed struct {
	values  map[string][]string
	changed map[string]bool
	args    []string
	// dash is cobra's ArgsLenAtDash: how many positional arguments came before "--", or
	// -1 without one. kubectl exec tells its pod from its command by it.
	dash int
}

// has reports whether the flag was given, even with an empty value (--groups "").
func (p parsed) has(name string) bool { return p.changed[name] }

// str returns a string flag's last value, as pflag does for a repeated scalar flag.
func (p parsed) str(name string) string {
	v := p.values[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (p parsed) boolean(name string) bool {
	b, _ := strconv.ParseBool(p.str(name)) // checked while parsing
	return b
}

func (p parsed) slice(name string) []string { return p.values[name] }

func (p parsed) duration(name string) (time.Duration, bool) {
	if !p.has(name) {
		return 0, false
	}
	d, _ := time.ParseDuration(p.str(name)) // checked while parsing
	return d, true
}

// parseFlags parses args the way pflag does for cobra: flags and positional arguments may
// be interleaved, "--name=v", "--name v", "-s v", "-sv" and "-s=v" all work, booleans take
// no separate value, and "--" ends the flags. Errors read like pflag's.
func parseFlags(c *command, rootFlags []flagSpec, rootUnsimulated []string, args []string) (parsed, error) {
	specs := append(append([]flagSpec(nil), rootFlags...), c.flags...)
	unsimulated := append(append([]string(nil), rootUnsimulated...), c.unsimulated...)
	p := parsed{values: map[string][]string{}, changed: map[string]bool{}, dash: -1}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			p.dash = len(p.args)
			p.args = append(p.args, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			name, value, hasValue := strings.Cut(a[2:], "=")
			spec := lookupLong(specs, name)
			if spec == nil {
				if isUnsimulated(unsimulated, name, "") {
					return p, notSimulatedFlag(c, "--"+name)
				}
				return p, fmt.Errorf("unknown flag: --%s", name)
			}
			if !hasValue && spec.kind != boolFlag {
				if i+1 >= len(args) {
					return p, fmt.Errorf("flag needs an argument: --%s", name)
				}
				i++
				value, hasValue = args[i], true
			}
			if err := p.set(spec, value, hasValue); err != nil {
				return p, err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			shorts := a[1:]
			for len(shorts) > 0 {
				s := shorts[:1]
				spec := lookupShort(specs, s)
				if spec == nil {
					if isUnsimulated(unsimulated, "", s) {
						return p, notSimulatedFlag(c, "-"+s)
					}
					return p, fmt.Errorf("unknown shorthand flag: '%s' in -%s", s, shorts)
				}
				rest := shorts[1:]
				var value string
				hasValue := false
				switch {
				case strings.HasPrefix(rest, "="):
					value, hasValue, rest = rest[1:], true, ""
				case spec.kind == boolFlag:
				case rest != "":
					value, hasValue, rest = rest, true, ""
				case i+1 < len(args):
					i++
					value, hasValue = args[i], true
				default:
					return p, fmt.Errorf("flag needs an argument: '%s' in -%s", s, shorts)
				}
				if err := p.set(spec, value, hasValue); err != nil {
					return p, err
				}
				shorts = rest
			}
		default:
			p.args = append(p.args, a)
		}
	}
	return p, nil
}

func (p *parsed) set(spec *flagSpec, value string, hasValue bool) error {
	p.changed[spec.name] = true
	switch spec.kind {
	case boolFlag:
		if !hasValue {
			value = "true"
		}
		if _, err := strconv.ParseBool(value); err != nil {
			return invalidFlagValue(spec, value, err)
		}
	case durationFlag:
		if _, err := time.ParseDuration(value); err != nil {
			return invalidFlagValue(spec, value, err)
		}
	case intFlag:
		if _, err := strconv.ParseInt(value, 0, 64); err != nil {
			return invalidFlagValue(spec, value, err)
		}
	case sliceFlag:
		for _, v := range strings.Split(value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				p.values[spec.name] = append(p.values[spec.name], v)
			}
		}
		return nil
	}
	p.values[spec.name] = append(p.values[spec.name], value)
	return nil
}

func invalidFlagValue(spec *flagSpec, value string, err error) error {
	name := "--" + spec.name
	if spec.short != "" {
		name = "-" + spec.short + ", " + name
	}
	return fmt.Errorf("invalid argument %q for %q flag: %v", value, name, err)
}

func lookupLong(specs []flagSpec, name string) *flagSpec {
	for i := range specs {
		if specs[i].name == name {
			return &specs[i]
		}
	}
	return nil
}

func lookupShort(specs []flagSpec, short string) *flagSpec {
	for i := range specs {
		if specs[i].short != "" && specs[i].short == short {
			return &specs[i]
		}
	}
	return nil
}

func isUnsimulated(list []string, name, short string) bool {
	for _, u := range list {
		long, s, _ := strings.Cut(u, "/")
		if (name != "" && long == name) || (short != "" && s == short) {
			return true
		}
	}
	return false
}

func notSimulatedFlag(c *command, flag string) error {
	return fmt.Errorf("fakekube: %s %s exists in the real tool but is not simulated", c.path(), flag)
}

// splitCommand finds the subcommand words among args (flags may come first, as cobra
// allows for persistent flags) and returns them with the remaining arguments. A command
// is matched on one word, or two when a command's name starts with the first ("token
// create"). A flag before the command that the tool does not know at all is returned as
// bad: its value could otherwise be mistaken for the command.
func splitCommand(args []string, commands []*command, root []flagSpec) (words, rest []string, bad string) {
	valueFlags, known := flagNames(commands, root)
	var wordIdx []int
	for i := 0; i < len(args) && len(wordIdx) < 2; i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "--") {
				name = name[:1] // a shorthand, possibly with its value attached
				hasValue = hasValue || len(strings.TrimLeft(a, "-")) > 1
			}
			if len(wordIdx) == 0 && !known[name] {
				return nil, nil, a
			}
			if !hasValue && valueFlags[name] {
				i++
			}
			continue
		}
		wordIdx = append(wordIdx, i)
		if len(wordIdx) == 1 && !needsSecondWord(commands, a) {
			break
		}
	}
	skip := map[int]bool{}
	for _, i := range wordIdx {
		words = append(words, args[i])
		skip[i] = true
	}
	for i, a := range args {
		if !skip[i] {
			rest = append(rest, a)
		}
	}
	return words, rest, ""
}

func needsSecondWord(commands []*command, first string) bool {
	for _, c := range commands {
		if strings.HasPrefix(c.name, first+" ") {
			return true
		}
	}
	return false
}

// flagNames lists the flags of a tool (names and shorthands): those that consume the next
// argument, and all of them.
func flagNames(commands []*command, root []flagSpec) (value, all map[string]bool) {
	value, all = map[string]bool{}, map[string]bool{}
	add := func(specs []flagSpec) {
		for _, s := range specs {
			all[s.name] = true
			if s.short != "" {
				all[s.short] = true
			}
			if s.kind != boolFlag {
				value[s.name] = true
				if s.short != "" {
					value[s.short] = true
				}
			}
		}
	}
	add(root)
	for _, c := range commands {
		add(c.flags)
	}
	return value, all
}
