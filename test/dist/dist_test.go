// Package dist builds the Debian packages with `make dist` and checks them: their control
// fields, maintainer scripts and every file's mode and owner with dpkg-deb, the files'
// contents against their sources, and, as root, that the agent's package installs,
// reinstalls, removes and purges on this machine without systemd, leaving nothing behind.
//
// The packages are built once, into a temporary directory (never bin/ or dist/, which a
// developer may be using), with a fixed VERSION so that the expected package version is
// known. Without dpkg-deb, or when tools/bin/nfpm cannot be built (no module proxy), the
// tests skip and say why.
package dist

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/internal/units"
)

const (
	// version is stamped into the binaries (make's VERSION, as git describe writes it),
	// and debVersion is what tools/dist/debversion.sh makes of it.
	version    = "v1.4.0-3-g1a2b3c4"
	debVersion = "1.4.0+3.g1a2b3c4"

	maintainer = "deployme maintainers <maintainers@deployme.invalid>"
	homepage   = "https://github.com/deployme/deployme"

	// buildTimeout bounds `make dist`: a cold nfpm build takes about 30 s on 2 cores.
	buildTimeout = 10 * time.Minute
)

// built holds the one `make dist` of this test binary.
var built struct {
	once sync.Once
	dir  string // temporary: bin/ and dist/ below it
	skip string // why the tests cannot run here
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// packages builds the packages on first use and returns the directory holding bin/ and
// dist/, or skips the test.
func packages(t *testing.T) string {
	t.Helper()
	built.once.Do(func() { built.dir, built.skip, built.err = build(repoRoot(t)) })
	if built.skip != "" {
		t.Skip(built.skip)
	}
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

func build(root string) (dir, skip string, err error) {
	switch {
	case testing.Short():
		return "", "-short: building the packages takes up to a minute", nil
	case runtime.GOOS != "linux" || runtime.GOARCH != "amd64":
		return "", fmt.Sprintf("the packages are linux/amd64; this is %s/%s", runtime.GOOS, runtime.GOARCH), nil
	}
	for _, tool := range []string{"dpkg-deb", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Sprintf("no %s on this machine (Debian's dpkg, make): the packages cannot be built or read", tool), nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// nfpm first, on its own: a machine that cannot build it (no module proxy) skips,
	// whereas a failing `make dist` is a failure.
	nfpm := filepath.Join(root, "tools", "bin", "nfpm")
	if out, err := makeIn(ctx, root, nfpm); err != nil {
		return "", fmt.Sprintf("tools/bin/nfpm cannot be built here (%v):\n%s", err, out), nil
	}
	dir, err = os.MkdirTemp("", "deployme-dist-")
	if err != nil {
		return "", "", err
	}
	start := time.Now()
	out, err := makeIn(ctx, root, "dist", "VERSION="+version,
		"BIN="+filepath.Join(dir, "bin"), "DIST="+filepath.Join(dir, "dist"))
	if err != nil {
		return dir, "", fmt.Errorf("make dist: %v\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "make dist: %s\n", time.Since(start).Round(100*time.Millisecond))
	return dir, "", nil
}

// makeIn runs make in root. The variables of a make that runs `go test` are dropped: this
// make is not its child, and its jobserver is not ours to use.
func makeIn(ctx context.Context, root string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "make", append([]string{"-C", root}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	return cmd.CombinedOutput()
}

// repoRoot walks up from the package directory to the main module's go.mod; the nested
// tools/ modules have module paths of their own and are not mistaken for it.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(mod, []byte("module github.com/deployme/deployme\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("main module's go.mod not found above the working directory")
		}
		dir = parent
	}
}

// pkg is one package as the tests expect it.
type pkg struct {
	name    string
	depends string
	// contents is every entry of `dpkg-deb --contents`: mode, owner/group, path.
	contents []string
	conffile string
	// scripts are the control archive's maintainer scripts and their sources.
	scripts map[string]string
	// files are the contents some packaged files must have.
	files map[string]string
	// binaries print version when run with --version.
	binaries []string
}

func want(t *testing.T) []pkg {
	t.Helper()
	root := repoRoot(t)
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// The packaged agent unit is the install script's with ExecStart moved to /usr/bin,
	// and only that.
	agentUnit := strings.Replace(units.Agent, "\nExecStart=/usr/local/bin/deployme-agent\n", "\nExecStart=/usr/bin/deployme-agent\n", 1)
	if agentUnit == units.Agent {
		t.Fatal("internal/units/deployme-agent.service has no ExecStart=/usr/local/bin/deployme-agent line: update the Makefile's dist rule and this test")
	}
	dirs := []string{
		"drwxr-xr-x root/root ./etc/",
		"drwxr-xr-x root/root ./etc/default/",
		"drwxr-xr-x root/root ./lib/",
		"drwxr-xr-x root/root ./lib/systemd/",
		"drwxr-xr-x root/root ./lib/systemd/system/",
		"drwxr-xr-x root/root ./usr/",
		"drwxr-xr-x root/root ./usr/bin/",
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	return []pkg{{
		name:    "deployme-coordinator",
		depends: "adduser",
		contents: sorted(append(slices.Clone(dirs),
			"-rwxr-xr-x root/root ./usr/bin/coordinator",
			"-rwxr-xr-x root/root ./usr/bin/deployme",
			"-rw-r--r-- root/root ./lib/systemd/system/deployme-coordinator.service",
			"-rw-r--r-- root/root ./etc/default/deployme-coordinator",
		)...),
		conffile: "/etc/default/deployme-coordinator",
		scripts: map[string]string{
			"postinst": read("tools/dist/scripts/coordinator-postinstall.sh"),
			"prerm":    read("tools/dist/scripts/coordinator-preremove.sh"),
			"postrm":   read("tools/dist/scripts/coordinator-postremove.sh"),
		},
		files: map[string]string{
			"./lib/systemd/system/deployme-coordinator.service": units.Coordinator,
			"./etc/default/deployme-coordinator":                read("tools/dist/defaults/deployme-coordinator"),
		},
		binaries: []string{"./usr/bin/coordinator"},
	}, {
		name: "deployme-agent",
		contents: sorted(append(slices.Clone(dirs),
			"-rwxr-xr-x root/root ./usr/bin/deployme-agent",
			"-rw-r--r-- root/root ./lib/systemd/system/deployme-agent.service",
			"-rw------- root/root ./etc/default/deployme-agent",
		)...),
		conffile: "/etc/default/deployme-agent",
		scripts: map[string]string{
			"postinst": read("tools/dist/scripts/agent-postinstall.sh"),
			"prerm":    read("tools/dist/scripts/agent-preremove.sh"),
			"postrm":   read("tools/dist/scripts/agent-postremove.sh"),
		},
		files: map[string]string{
			"./lib/systemd/system/deployme-agent.service": agentUnit,
			"./etc/default/deployme-agent":                read("tools/dist/defaults/deployme-agent"),
		},
		binaries: []string{"./usr/bin/deployme-agent"},
	}}
}

func debPath(dir, name string) string {
	return filepath.Join(dir, "dist", name+"_"+debVersion+"_amd64.deb")
}

func TestDistBuildsOnlyThePackages(t *testing.T) {
	dir := packages(t)
	entries, err := os.ReadDir(filepath.Join(dir, "dist"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if !e.IsDir() {
			got = append(got, e.Name())
		}
	}
	wantFiles := []string{"deployme-agent_" + debVersion + "_amd64.deb", "deployme-coordinator_" + debVersion + "_amd64.deb"}
	if diff := cmp.Diff(wantFiles, got); diff != "" {
		t.Errorf("files in dist/ (-want +got):\n%s", diff)
	}
}

// infoLine is a control archive member in `dpkg-deb --info`:
// "     1047 bytes,    28 lines   *  postinst             #!/bin/sh" (* = executable).
var infoLine = regexp.MustCompile(`^\s+\d+ bytes,\s+\d+ lines\s+(\*?)\s+(\S+)`)

// fieldLine is a control field in `dpkg-deb --info`: " Package: deployme-agent".
var fieldLine = regexp.MustCompile(`^ ([A-Za-z][A-Za-z0-9-]*): (.*)$`)

func TestInfo(t *testing.T) {
	dir := packages(t)
	for _, p := range want(t) {
		t.Run(p.name, func(t *testing.T) {
			deb := debPath(dir, p.name)
			out := dpkgDeb(t, "--info", deb)
			fields := map[string]string{}
			members := map[string]bool{} // name: executable
			for line := range strings.Lines(out) {
				line = strings.TrimRight(line, "\n")
				if m := infoLine.FindStringSubmatch(line); m != nil {
					members[m[2]] = m[1] == "*"
				} else if m := fieldLine.FindStringSubmatch(line); m != nil {
					fields[m[1]] = m[2]
				}
			}
			wantFields := map[string]string{
				"Package":      p.name,
				"Version":      debVersion,
				"Architecture": "amd64",
				"Depends":      p.depends, // "": no Depends field
				"Maintainer":   maintainer,
				"Homepage":     homepage,
				"Section":      "admin",
				"Priority":     "optional",
			}
			got := map[string]string{}
			for k := range wantFields {
				got[k] = fields[k]
			}
			if diff := cmp.Diff(wantFields, got); diff != "" {
				t.Errorf("control fields (-want +got):\n%s\n%s", diff, out)
			}
			if d := fields["Description"]; !strings.HasPrefix(d, "deployme ") {
				t.Errorf("Description: %q, want a synopsis that starts with deployme", d)
			}
			wantMembers := map[string]bool{"control": false, "md5sums": false, "conffiles": false,
				"postinst": true, "prerm": true, "postrm": true}
			if diff := cmp.Diff(wantMembers, members); diff != "" {
				t.Errorf("control archive members, name: executable (-want +got):\n%s", diff)
			}
			if got := strings.TrimSpace(dpkgDeb(t, "--info", deb, "conffiles")); got != p.conffile {
				t.Errorf("conffiles: %q, want %q", got, p.conffile)
			}
			for name, src := range p.scripts {
				if got := dpkgDeb(t, "--info", deb, name); got != src {
					t.Errorf("%s is not its source in tools/dist/scripts:\n%s", name, cmp.Diff(src, got))
				}
			}
		})
	}
}

func TestContents(t *testing.T) {
	dir := packages(t)
	for _, p := range want(t) {
		t.Run(p.name, func(t *testing.T) {
			out := dpkgDeb(t, "--contents", debPath(dir, p.name))
			var got []string
			for line := range strings.Lines(out) {
				// drwxr-xr-x root/root         0 2026-11-27 05:58 ./etc/
				f := strings.Fields(line)
				if len(f) != 6 {
					t.Fatalf("unexpected line in dpkg-deb --contents: %q", line)
				}
				got = append(got, f[0]+" "+f[1]+" "+f[5])
			}
			slices.Sort(got)
			if diff := cmp.Diff(p.contents, got); diff != "" {
				t.Errorf("contents: mode, owner, path (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	dir := packages(t)
	for _, p := range want(t) {
		t.Run(p.name, func(t *testing.T) {
			files := extract(t, debPath(dir, p.name), t.TempDir())
			for name, wantText := range p.files {
				if diff := cmp.Diff(wantText, files[name]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			}
			// The binaries carry the version the package is named after.
			for _, name := range p.binaries {
				out, err := exec.CommandContext(t.Context(), files[name], "--version").CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != version {
					t.Errorf("%s --version: %q, %v; want %q", name, out, err, version)
				}
			}
		})
	}
}

// extract writes the package's regular files under dir and returns, by their path in the
// package, the contents of the small ones and the extracted path of the executables.
func extract(t *testing.T, deb, dir string) map[string]string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "dpkg-deb", "--fsys-tarfile", deb)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.FileInfo().Mode()&0o111 == 0 {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = string(b)
			continue
		}
		p := filepath.Join(dir, filepath.Base(h.Name))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		files[h.Name] = p
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile: %v: %s", err, stderr.Bytes())
	}
	return files
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "dpkg-deb", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("dpkg-deb %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("dpkg-deb %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// The agent package's paths on the host, and their modes.
var agentPaths = []struct {
	path string
	mode fs.FileMode
}{
	{"/usr/bin/deployme-agent", 0o755},
	{"/lib/systemd/system/deployme-agent.service", 0o644},
	{"/etc/default/deployme-agent", 0o600},
	{"/var/lib/deployme-agent", fs.ModeDir | 0o700},
}

// TestInstallAgent installs the agent's package on this machine, as an operator does, and
// purges it again. Its scripts run for real; without a running systemd they leave the
// service alone, and with one they never start it (the agent needs a join token first).
func TestInstallAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i needs root: run as root to install and purge the agent's package")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg on this machine")
	}
	dir := packages(t)
	// A machine with an agent of its own (installed by the script or the package) is not
	// ours to purge.
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "deployme-agent").Output(); err == nil && len(out) > 0 && string(out) != "not-installed" {
		t.Skipf("the deployme-agent package is on this machine (%s): not touching it", out)
	}
	for _, p := range agentPaths {
		if _, err := os.Lstat(p.path); err == nil {
			t.Skipf("%s exists: this machine has a deployme agent of its own, not touching it", p.path)
		}
	}
	if _, err := os.Lstat("/usr/local/bin/deployme-agent"); err == nil {
		t.Skip("/usr/local/bin/deployme-agent exists: the install script put an agent on this machine, not touching it")
	}

	deb := debPath(dir, "deployme-agent")
	t.Cleanup(func() {
		// Even after a failure: nothing of the package may stay on the machine.
		if out, err := dpkg("--purge", "deployme-agent"); err != nil {
			t.Errorf("cleanup: dpkg --purge deployme-agent: %v\n%s", err, out)
		}
	})

	out, err := dpkg("-i", deb)
	if err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	t.Logf("dpkg -i:\n%s", out)
	if !strings.Contains(out, "set DEPLOYME_COORDINATOR and DEPLOYME_JOIN_TOKEN in /etc/default/deployme-agent") {
		t.Errorf("dpkg -i printed no hint about the settings:\n%s", out)
	}
	checkStatus(t, "install ok installed")
	checkPaths(t, true, true, true, true)
	if out, err := exec.CommandContext(t.Context(), "/usr/bin/deployme-agent", "--version").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != version {
		t.Errorf("/usr/bin/deployme-agent --version: %q, %v; want %q", out, err, version)
	}

	// Installing the same package again runs prerm upgrade and postinst configure VERSION:
	// the scripts must cope with everything being there already.
	if out, err := dpkg("-i", deb); err != nil {
		t.Fatalf("dpkg -i, again: %v\n%s", err, out)
	}
	checkStatus(t, "install ok installed")
	checkPaths(t, true, true, true, true)

	// The host's identity and the operator's settings survive a remove; the program goes.
	identity := "/var/lib/deployme-agent/identity.json"
	if err := os.WriteFile(identity, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := []byte("DEPLOYME_COORDINATOR=10.0.0.1:9090\nDEPLOYME_JOIN_TOKEN=dpj_test\n")
	if err := os.WriteFile("/etc/default/deployme-agent", settings, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := dpkg("--remove", "deployme-agent"); err != nil {
		t.Fatalf("dpkg --remove: %v\n%s", err, out)
	}
	checkStatus(t, "deinstall ok config-files")
	checkPaths(t, false, false, true, true)
	if got, err := os.ReadFile("/etc/default/deployme-agent"); err != nil || !bytes.Equal(got, settings) {
		t.Errorf("/etc/default/deployme-agent after remove: %q, %v; want the operator's settings", got, err)
	}
	if _, err := os.Stat(identity); err != nil {
		t.Errorf("the host's identity did not survive a remove: %v", err)
	}

	if out, err := dpkg("--purge", "deployme-agent"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	checkPaths(t, false, false, false, false)
	if out, err := exec.Command("dpkg", "-s", "deployme-agent").CombinedOutput(); err == nil {
		t.Errorf("dpkg -s deployme-agent after purge succeeded:\n%s", out)
	}
}

func dpkg(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dpkg", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func checkStatus(t *testing.T, want string) {
	t.Helper()
	out, err := exec.Command("dpkg", "-s", "deployme-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg -s deployme-agent: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\nStatus: "+want+"\n") {
		t.Errorf("dpkg -s deployme-agent: want Status: %s\n%s", want, out)
	}
	if !strings.Contains(string(out), "\nVersion: "+debVersion+"\n") {
		t.Errorf("dpkg -s deployme-agent: want Version: %s\n%s", debVersion, out)
	}
}

// checkPaths checks which of the binary, the unit, the settings and the state directory
// exist, and the modes and owner (root) of those that do.
func checkPaths(t *testing.T, exist ...bool) {
	t.Helper()
	for i, p := range agentPaths {
		fi, err := os.Lstat(p.path)
		switch {
		case !exist[i] && err == nil:
			t.Errorf("%s exists, want it gone", p.path)
		case !exist[i] && !errors.Is(err, fs.ErrNotExist):
			t.Errorf("%s: %v", p.path, err)
		case exist[i] && err != nil:
			t.Errorf("%s: %v", p.path, err)
		case exist[i] && fi.Mode() != p.mode:
			t.Errorf("%s: mode %v, want %v", p.path, fi.Mode(), p.mode)
		case exist[i]:
			if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 || st.Gid != 0 {
				t.Errorf("%s: owner %+v, want root:root", p.path, fi.Sys())
			}
		}
	}
}
