package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

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

// commandKernel loads modules with modprobe and applies a sysctl file with sysctl -p, the
// same tools systemd-modules-load and systemd-sysctl would use at the next boot.
type commandKernel struct {
	runner kubeadm.Runner
	env    []string
}

func (k commandKernel) LoadModules(ctx context.Context, modules []string) error {
	for _, m := range modules {
		if err := k.run(ctx, "modprobe", m); err != nil {
			return err
		}
	}
	return nil
}

func (k commandKernel) ApplySysctls(ctx context.Context, file string) error {
	return k.run(ctx, "sysctl", "-p", file)
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
