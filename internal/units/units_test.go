package units

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// directives parses a unit into section -> key -> values (a key may repeat).
func directives(t *testing.T, unit string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(unit))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: %q is neither a section, a comment nor key=value", n, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// TestUnits pins the directives others rely on: the install script and the packages write
// /etc/default files these units read, at the paths they install binaries to; the state
// directories hold secrets.
func TestUnits(t *testing.T) {
	tests := []struct {
		name, unit string
		want       map[string]string // Service directives
		absent     []string
	}{
		{name: "agent", unit: Agent, want: map[string]string{
			"Restart":            "always",
			"RestartSec":         "2",
			"EnvironmentFile":    "-/etc/default/deployme-agent",
			"ExecStart":          "/usr/local/bin/deployme-agent",
			"StateDirectory":     "deployme-agent",
			"StateDirectoryMode": "0700",
			"NoNewPrivileges":    "yes",
		},
			// kubeadm writes /etc and /var and unmounts kubelet's volumes on the host, as
			// root: none of these may creep in.
			absent: []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ReadOnlyPaths",
				"ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "User", "DynamicUser",
				"CapabilityBoundingSet", "PrivateUsers", "RestrictNamespaces", "MountFlags"},
		},
		{name: "coordinator", unit: Coordinator, want: map[string]string{
			"User":               "deployme",
			"StateDirectory":     "deployme",
			"StateDirectoryMode": "0700",
			"ExecStart":          "/usr/bin/coordinator --data-dir /var/lib/deployme",
			"EnvironmentFile":    "-/etc/default/deployme-coordinator",
			"ProtectSystem":      "strict",
			"ProtectHome":        "yes",
			"PrivateTmp":         "yes",
			"NoNewPrivileges":    "yes",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := directives(t, tc.unit)
			for _, s := range []string{"Unit", "Service", "Install"} {
				if _, ok := d[s]; !ok {
					t.Errorf("no [%s] section", s)
				}
			}
			for k, want := range tc.want {
				if got := d["Service"][k]; !slices.Equal(got, []string{want}) {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			for _, k := range tc.absent {
				if got, ok := d["Service"][k]; ok {
					t.Errorf("%s=%q is set; the agent must run kubeadm as root on the host's mounts", k, got)
				}
			}
			if got := d["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
				t.Errorf("WantedBy=%q, want multi-user.target", got)
			}
		})
	}
}

// TestUnitsEmbedTheFiles: packaging ships the files by path, the install script the
// embedded text; they must be the same bytes.
func TestUnitsEmbedTheFiles(t *testing.T) {
	for name, embedded := range map[string]string{AgentName: Agent, CoordinatorName: Coordinator} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != embedded {
			t.Errorf("%s differs from its embedded copy", name)
		}
	}
}

// TestUnitsVerify runs systemd's own parser over the units when it is installed: an
// unknown directive or a malformed value is only a warning at runtime, silently ignored,
// so it must fail here.
func TestUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (Debian: systemd); the units' syntax is not checked")
	}
	dir := t.TempDir()
	for name, text := range map[string]string{AgentName: Agent, CoordinatorName: Coordinator} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", filepath.Join(dir, AgentName), filepath.Join(dir, CoordinatorName))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // fails here anyway: the binaries are not installed on this machine
	// Parse problems are reported as <file>:<line>: ...; missing binaries and targets
	// (this machine is not a deployme host, maybe not even booted with systemd) are not.
	parse := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(dir) + `/[^:]+:\d+: .*$`)
	for _, m := range parse.FindAllString(out.String(), -1) {
		t.Errorf("systemd-analyze verify: %s", m)
	}
}
