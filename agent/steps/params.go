package steps

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"time"

	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// Everything in a StepAssignment comes from the network. It is checked here, before any step
// touches the host, and every problem becomes reason invalid_params.

// Roles of a node (the common parameter "role").
const (
	roleInit         = "control-plane-init"
	roleControlPlane = "control-plane"
	roleWorker       = "worker"
)

// params reads StepAssignment.params.
type params map[string]string

// required returns a parameter that must be present and non-empty.
func (p params) required(name string) (string, error) {
	v := strings.TrimSpace(p[name])
	if v == "" {
		return "", invalidf("parameter %s is required", name)
	}
	return v, nil
}

// role returns the node's role; every value outside the three of docs/steps.md is refused.
func (p params) role() (string, error) {
	r, err := p.required("role")
	if err != nil {
		return "", err
	}
	switch r {
	case roleInit, roleControlPlane, roleWorker:
		return r, nil
	}
	return "", invalidf("role %q is none of %s, %s, %s", r, roleInit, roleControlPlane, roleWorker)
}

// simulated reads the "simulated" flag. Only "true" and "false" (or nothing) are accepted, so
// that a typo never silently turns development mode off.
func (p params) simulated() (bool, error) {
	switch v := p["simulated"]; v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, invalidf("simulated %q is neither true nor false", v)
	}
}

// nodeName returns a parameter holding a Kubernetes node name. Node names end up on command
// lines, so the RFC 1123 check also keeps anything that looks like a flag out.
func (p params) nodeName(name string) (string, error) {
	v, err := p.required(name)
	if err != nil {
		return "", err
	}
	if len(v) > 253 || !subdomainRE.MatchString(v) {
		return "", invalidf("%s %q is not a DNS subdomain (RFC 1123)", name, v)
	}
	return v, nil
}

// duration returns a positive Go duration ("15m0s", "10m").
func (p params) duration(name string) (time.Duration, error) {
	v, err := p.required(name)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, invalidf("%s %q is not a positive duration", name, v)
	}
	return d, nil
}

// token returns a bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}.
func (p params) token(name string) (string, error) {
	v, err := p.required(name)
	if err != nil {
		return "", err
	}
	if !tokenRE.MatchString(v) {
		return "", invalidf("%s is not a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16}", name)
	}
	return v, nil
}

// version returns a Kubernetes version, vMAJOR.MINOR.PATCH.
func (p params) version(name string) (string, error) {
	v, err := p.required(name)
	if err != nil {
		return "", err
	}
	if !versionRE.MatchString(v) {
		return "", invalidf("%s %q is not of the form vMAJOR.MINOR.PATCH", name, v)
	}
	return v, nil
}

// list splits a comma-separated parameter, dropping blanks; absent means none.
func (p params) list(name string) []string {
	var out []string
	for s := range strings.SplitSeq(p[name], ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var (
	subdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	tokenRE     = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	versionRE   = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
)

// hostFile is a validated StepAssignment.File.
type hostFile struct {
	path    string // clean, absolute, inside one of fileDirs
	mode    fs.FileMode
	content []byte
}

// fileDirs are the only directories the coordinator may write into. Everything in them is
// removed by reset, which is what makes "reset leaves nothing of ours" hold.
var fileDirs = []string{pkiDir, deploymeDir}

// Modes a file gets when the coordinator sends 0.
const (
	defaultFileMode = 0o644
	keyFileMode     = 0o600
)

// validateFiles checks every file; allowed says whether a valid path is one the step takes.
func validateFiles(in []*agentv1.File, allowed func(string) bool) ([]hostFile, error) {
	seen := map[string]bool{}
	out := make([]hostFile, 0, len(in))
	for i, f := range in {
		if f == nil {
			return nil, invalidf("file %d is empty", i)
		}
		p, err := validateFilePath(f.GetPath())
		if err != nil {
			return nil, err
		}
		if !allowed(p) {
			return nil, invalidf("file %s is not one this step takes", p)
		}
		if seen[p] {
			return nil, invalidf("file %s is sent twice", p)
		}
		seen[p] = true
		mode, err := fileMode(p, f.GetMode())
		if err != nil {
			return nil, err
		}
		out = append(out, hostFile{path: p, mode: mode, content: f.GetContent()})
	}
	return out, nil
}

// validateFilePath accepts only clean absolute paths strictly inside fileDirs. Requiring the
// path to be clean (rather than cleaning it) refuses "..", "//" and "." outright, so no
// spelling of a path can land somewhere its text does not say.
func validateFilePath(p string) (string, error) {
	if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return "", invalidf("file path %q is not a clean absolute path", p)
	}
	for _, dir := range fileDirs {
		if strings.HasPrefix(p, dir+"/") {
			return p, nil
		}
	}
	return "", invalidf("file path %q is outside %s", p, strings.Join(fileDirs, " and "))
}

// fileMode refuses anything beyond permission bits (setuid, sticky, types) and caps private
// keys at 0600: a key readable by other users of the host is never what the sender meant.
func fileMode(p string, m uint32) (fs.FileMode, error) {
	if m > 0o777 {
		return 0, invalidf("file %s: mode %#o is not a permission mode (at most 0o777)", p, m)
	}
	isKey := strings.HasSuffix(p, ".key")
	mode := fs.FileMode(m)
	switch {
	case mode == 0 && isKey:
		mode = keyFileMode
	case mode == 0:
		mode = defaultFileMode
	case isKey:
		mode &= keyFileMode
	}
	return mode, nil
}
