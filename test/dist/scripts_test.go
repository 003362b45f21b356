package dist

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDebVersion(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh on this machine")
	}
	script := filepath.Join(repoRoot(t), "tools", "dist", "debversion.sh")
	tests := []struct{ describe, want string }{
		{"v1.4.0", "1.4.0"},
		{"v1.4.0-dirty", "1.4.0+0.dirty"},
		{"v1.4.0-rc.1", "1.4.0~rc.1"},
		{"v1.4.0-rc.1-2-gabcdef0", "1.4.0~rc.1+2.gabcdef0"},
		{"v1.4.0-3-g1a2b3c4", "1.4.0+3.g1a2b3c4"},
		{"v1.4.0-3-g1a2b3c4-dirty", "1.4.0+3.g1a2b3c4.dirty"},
		{"1.4.0", "1.4.0"},
		{"1a2b3c4", "0.0.0~git1a2b3c4"},
		{"1a2b3c4-dirty", "0.0.0~git1a2b3c4+dirty"},
		// An all-digit hash has no dot, so it is no tag.
		{"1234567", "0.0.0~git1234567"},
		{"dev", "0.0.0~dev"},
		{"", "0.0.0~unknown"},
		{"feature/x_y", "0.0.0~feature.x.y"},
	}
	for _, tc := range tests {
		t.Run(tc.describe, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), "sh", script, tc.describe).CombinedOutput()
			if err != nil {
				t.Fatalf("debversion.sh %q: %v\n%s", tc.describe, err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("debversion.sh %q = %q, want %q", tc.describe, got, tc.want)
			}
			if _, err := exec.LookPath("dpkg"); err == nil {
				if out, err := exec.Command("dpkg", "--validate-version", tc.want).CombinedOutput(); err != nil {
					t.Errorf("dpkg --validate-version %q: %v: %s", tc.want, err, out)
				}
			}
		})
	}
}

// TestDebVersionOrder checks that dpkg (and so apt) upgrades in the order the versions were
// made: snapshots before any release, a pre-release before its release, commits after a
// tag between it and the next release.
func TestDebVersionOrder(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg on this machine")
	}
	ordered := []string{
		"0.0.0~git1a2b3c4",
		"1.4.0~rc.1",
		"1.4.0~rc.1+2.gabcdef0",
		"1.4.0",
		"1.4.0+0.dirty",
		"1.4.0+3.g1a2b3c4",
		"1.4.0+3.g1a2b3c4.dirty",
		"1.4.1~rc.1",
		"1.4.1",
	}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		if out, err := exec.Command("dpkg", "--compare-versions", a, "lt", b).CombinedOutput(); err != nil {
			t.Errorf("dpkg --compare-versions %s lt %s: %v %s", a, b, err, out)
		}
	}
}

// TestScripts checks that the maintainer scripts and debversion.sh are POSIX sh: dash
// (Debian's /bin/sh) parses them, and shellcheck, when installed, finds nothing.
func TestScripts(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "tools", "dist")
	scripts, err := filepath.Glob(filepath.Join(dir, "scripts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) != 6 {
		t.Fatalf("tools/dist/scripts: %d scripts, want 6 (postinstall, preremove and postremove of each package)", len(scripts))
	}
	scripts = append(scripts, filepath.Join(dir, "debversion.sh"))
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("#!/bin/sh\n")) || !regexp.MustCompile(`(?m)^set -e`).Match(b) {
			t.Errorf("%s: want #!/bin/sh and set -e", s)
		}
		if sh, err := exec.LookPath("dash"); err == nil {
			if out, err := exec.Command(sh, "-n", s).CombinedOutput(); err != nil {
				t.Errorf("dash -n %s: %v\n%s", s, err, out)
			}
		}
	}
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("no shellcheck on this machine (Debian's shellcheck): the scripts were only parsed")
	}
	if out, err := exec.Command(shellcheck, append([]string{"-s", "sh"}, scripts...)...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// setting is a DEPLOYME_ line of a defaults file, commented out or not.
var setting = regexp.MustCompile(`^#?DEPLOYME_([A-Z0-9_]+)=(.*)$`)

// TestDefaultsMatchFlags checks every setting of the packaged /etc/default files against
// the flags of the binary that reads it: the flag exists, and a value written there is
// the flag's default, so that a renamed flag or a changed default fails here instead of
// misleading an operator.
func TestDefaultsMatchFlags(t *testing.T) {
	dir := packages(t)
	root := repoRoot(t)
	for _, tc := range []struct{ defaults, binary string }{
		{"deployme-coordinator", "coordinator"},
		{"deployme-agent", "agent"},
	} {
		t.Run(tc.defaults, func(t *testing.T) {
			// -h exits 0 and prints the flags to stderr.
			help, err := exec.CommandContext(t.Context(), filepath.Join(dir, "bin", tc.binary), "-h").CombinedOutput()
			if err != nil {
				t.Fatalf("%s -h: %v\n%s", tc.binary, err, help)
			}
			flags := parseHelp(string(help))
			f, err := os.Open(filepath.Join(root, "tools", "dist", "defaults", tc.defaults))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n := 0
			for sc := bufio.NewScanner(f); sc.Scan(); {
				m := setting.FindStringSubmatch(sc.Text())
				if m == nil {
					continue
				}
				n++
				name := strings.ToLower(strings.ReplaceAll(m[1], "_", "-"))
				def, ok := flags[name]
				switch {
				case !ok:
					t.Errorf("%s: %s -h has no -%s", sc.Text(), tc.binary, name)
				case m[2] != "" && m[2] != def:
					t.Errorf("%s: the default of -%s is %q", sc.Text(), name, def)
				}
			}
			if n == 0 {
				t.Errorf("no DEPLOYME_ settings in %s", tc.defaults)
			}
		})
	}
}

// parseHelp returns the flags of Go's flag.PrintDefaults output and their defaults (the
// last "(default X)" of each usage, unquoted; "" when there is none).
func parseHelp(help string) map[string]string {
	flagLine := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	defaultOf := regexp.MustCompile(`\(default "?([^"]*?)"?\)$`)
	flags := map[string]string{}
	var name string
	for line := range strings.Lines(help) {
		line = strings.TrimRight(line, "\n")
		if m := flagLine.FindStringSubmatch(line); m != nil {
			name = m[1]
			flags[name] = ""
			continue
		}
		if name != "" {
			if m := defaultOf.FindStringSubmatch(line); m != nil {
				flags[name] = m[1]
			}
		}
	}
	return flags
}
