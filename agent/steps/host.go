package steps

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/deployme/deployme/agent/kubeadm"
	"github.com/deployme/deployme/internal/atomicfile"
)

// hostFiles is the host's file system as the steps see it. Names are host paths ("/etc/..."),
// as if the root were "/"; the implementation puts them under Config.Root.
type hostFiles interface {
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	// WriteFile replaces name atomically, creating missing parents (0755, as kubeadm
	// does): a host that loses power mid-step has the old file or the new one, never half.
	WriteFile(name string, data []byte, perm fs.FileMode) error
	// Remove removes a file or an empty directory; RemoveAll a whole tree. Both succeed
	// when name does not exist.
	Remove(name string) error
	RemoveAll(name string) error
}

// rootFiles implements hostFiles on a directory of this machine. Confinement is lexical: the
// names come from this package or were checked by validateFilePath, so none holds "..";
// symlinks inside the root belong to the host's administrator, not to the network.
type rootFiles struct{ root string }

func (r rootFiles) path(name string) string {
	return filepath.Join(r.root, filepath.FromSlash(path.Clean("/"+name)))
}

func (r rootFiles) ReadFile(name string) ([]byte, error)       { return os.ReadFile(r.path(name)) }
func (r rootFiles) Stat(name string) (fs.FileInfo, error)      { return os.Stat(r.path(name)) }
func (r rootFiles) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(r.path(name)) }

func (r rootFiles) WriteFile(name string, data []byte, perm fs.FileMode) error {
	p := r.path(name)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(p, data, perm)
}

func (r rootFiles) Remove(name string) error {
	err := os.Remove(r.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (r rootFiles) RemoveAll(name string) error { return os.RemoveAll(r.path(name)) }

// exists reports whether name exists; an error other than "does not exist" counts as
// existing, so that a needs-to-run check never re-runs kubeadm because of, say, EACCES.
func exists(files hostFiles, name string) bool {
	_, err := files.Stat(name)
	return !errors.Is(err, fs.ErrNotExist)
}

// sameFile reports whether name already holds data with mode perm.
func sameFile(files hostFiles, name string, data []byte, perm fs.FileMode) bool {
	fi, err := files.Stat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		return false
	}
	b, err := files.ReadFile(name)
	return err == nil && bytes.Equal(b, data)
}

// hostKernel changes live kernel state. Only an executor whose root is "/" has a real one:
// with any other root the files describe some other machine, and loading modules or
// applying sysctls on this one would be wrong.
type hostKernel interface {
	LoadModules(ctx context.Context, modules []string) error
	ApplySysctls(ctx context.Context, file string) error
}

// noKernel is the hostKernel of an executor that does not manage the machine it runs on.
type noKernel struct{}

func (noKernel) LoadModules(context.Context, []string) error { return nil }
func (noKernel) ApplySysctls(context.Context, string) error  { return nil }

// commandKernel changes the live kernel of the machine the agent runs on. Sysctls are
// written through procfs, which needs no tool on the host; modules still go through modprobe,
// and only those not loaded yet: loading one from Go would mean finding it under
// /lib/modules/$(uname -r), decompressing it (.ko.xz, .ko.zst), loading its dependencies
// from modules.dep first and calling finit_module, which is modprobe's whole job.
type commandKernel struct {
	runner kubeadm.Runner
	env    []string
	// files reads the sysctl file; procSys and sysModule stand for /proc/sys and
	// /sys/module. Zero values are the real ones: an executor has a commandKernel only
	// when its root is "/" (see New), so host paths are paths of this machine.
	files     hostFiles
	procSys   string
	sysModule string
}

const (
	defaultProcSys   = "/proc/sys"
	defaultSysModule = "/sys/module"
)

func (k commandKernel) LoadModules(ctx context.Context, modules []string) error {
	sysModule := cmp.Or(k.sysModule, defaultSysModule)
	for _, m := range modules {
		if m == "" || strings.ContainsAny(m, "/.") {
			return fmt.Errorf("module name %q", m)
		}
		// /sys/module/<name> exists once a module is loaded (and for built-in ones with
		// parameters); its name there has '_' where modprobe also accepts '-'.
		if _, err := os.Stat(filepath.Join(sysModule, strings.ReplaceAll(m, "-", "_"))); err == nil {
			continue
		}
		if err := k.run(ctx, "modprobe", m); err != nil {
			return err
		}
	}
	return nil
}

// ApplySysctls sets every key of file (sysctl.d format) that does not have its value yet.
// Unchanged keys are not written: writing net.ipv4.ip_forward, even with its current value,
// resets the forwarding setting of every interface. All keys are tried; the errors are joined.
func (k commandKernel) ApplySysctls(ctx context.Context, file string) error {
	files := k.files
	if files == nil {
		files = rootFiles{root: "/"}
	}
	data, err := files.ReadFile(file)
	if err != nil {
		return err
	}
	entries, err := parseSysctls(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	procSys := cmp.Or(k.procSys, defaultProcSys)
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := writeSysctl(filepath.Join(procSys, e.path), e.value)
		if err != nil && !e.optional {
			errs = append(errs, fmt.Errorf("sysctl %s: %w", e.key, err))
		}
	}
	return errors.Join(errs...)
}

// sysctl is one "key = value" line of a sysctl.d file.
type sysctl struct {
	key      string // as written, for messages
	path     string // relative to /proc/sys
	value    string
	optional bool // the key had a leading '-': a missing or unwritable key is not an error
}

// parseSysctls parses the sysctl.d(5) format: "key = value" lines, '#' and ';' comments, a
// leading '-' making a key optional. A key uses '.' or '/' as separators; when its first
// separator is '.', dots and slashes swap, so that "net.ipv4.conf.eth0/100.rp_filter" names
// the interface "eth0.100". Globs are refused: this file is ours and has none.
func parseSysctls(data []byte) ([]sysctl, error) {
	var out []sysctl
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: no '='", i+1)
		}
		e := sysctl{key: strings.TrimSpace(key), value: strings.TrimSpace(value)}
		if rest, ok := strings.CutPrefix(e.key, "-"); ok {
			e.key, e.optional = rest, true
		}
		path, err := sysctlPath(e.key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		e.path = path
		out = append(out, e)
	}
	return out, nil
}

// sysctlPath turns a key into a path relative to /proc/sys, refusing any that could leave it.
func sysctlPath(key string) (string, error) {
	p := key
	if i := strings.IndexAny(key, "./"); i >= 0 && key[i] == '.' {
		p = strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, key)
	}
	parts := strings.Split(p, "/")
	for _, part := range parts {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "*?[") {
			return "", fmt.Errorf("sysctl key %q", key)
		}
	}
	return filepath.Join(parts...), nil
}

// writeSysctl writes value to a procfs file unless it holds that value already (compared
// field by field: procfs writes multi-value settings with tabs).
func writeSysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Some keys are write-only (net.ipv4.route.flush): those are written whatever they hold.
	if err == nil && slices.Equal(strings.Fields(string(cur)), strings.Fields(value)) {
		return nil
	}
	// No O_CREATE: a key the kernel does not have (its module is not loaded) is an error,
	// not a new file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

func (k commandKernel) run(ctx context.Context, tool string, args ...string) error {
	res, err := k.runner.Run(ctx, kubeadm.Command{Path: tool, Args: args, Env: k.env}, func(string) {})
	if err != nil {
		return fmt.Errorf("%s: %w", tool, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s %v: exit status %d: %s", tool, args, res.ExitCode, errorLine(res.Tail))
	}
	return nil
}
