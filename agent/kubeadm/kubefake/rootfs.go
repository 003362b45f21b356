package kubefake

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// hostFS is the host's filesystem as kubeadm sees it after `--rootfs R` chroots into R.
// Every access goes through an os.Root, so neither ".." nor a symlink can reach outside R:
// the fake writes nowhere but its root and its state directory.
type hostFS struct {
	root *os.Root
	base string // R as an absolute host path
}

func openHostFS(base string) (*hostFS, error) {
	r, err := os.OpenRoot(base)
	if err != nil {
		return nil, err
	}
	return &hostFS{root: r, base: base}, nil
}

func (h *hostFS) Close() error { return h.root.Close() }

// rel turns an absolute path inside the root ("/etc/kubernetes") into the relative name
// os.Root takes ("etc/kubernetes").
func rel(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

// hostPath is where a path inside the root lives on the real host.
func (h *hostFS) hostPath(p string) string {
	return filepath.Join(h.base, filepath.FromSlash(path.Clean("/"+p)))
}

// inRootErr rewrites os.Root's relative names back to the absolute paths kubeadm would
// print inside its chroot.
func inRootErr(err error, p string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		op := pe.Op
		if op == "openat" { // os.Root's name for what kubeadm sees as open
			op = "open"
		}
		return &fs.PathError{Op: op, Path: path.Clean("/" + p), Err: pe.Err}
	}
	return err
}

func (h *hostFS) readFile(p string) ([]byte, error) {
	b, err := h.root.ReadFile(rel(p))
	return b, inRootErr(err, p)
}

// readHead reads at most n bytes from the start of a file.
func (h *hostFS) readHead(p string, n int64) ([]byte, error) {
	f, err := h.root.Open(rel(p))
	if err != nil {
		return nil, inRootErr(err, p)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n))
	return b, inRootErr(err, p)
}

func (h *hostFS) writeFile(p string, data []byte, perm os.FileMode) error {
	if err := h.root.MkdirAll(rel(path.Dir(path.Clean("/"+p))), 0o755); err != nil {
		return inRootErr(err, p)
	}
	return inRootErr(h.root.WriteFile(rel(p), data, perm), p)
}

func (h *hostFS) mkdirAll(p string, perm os.FileMode) error {
	return inRootErr(h.root.MkdirAll(rel(p), perm), p)
}

func (h *hostFS) exists(p string) bool {
	_, err := h.root.Stat(rel(p))
	return err == nil
}

// dirNotEmpty reports whether p is a directory with entries, as kubeadm's
// DirAvailableCheck does.
func (h *hostFS) dirNotEmpty(p string) bool {
	f, err := h.root.Open(rel(p))
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// cleanDir removes everything inside p but keeps p, as kubeadm reset's CleanDir does.
func (h *hostFS) cleanDir(p string) error {
	f, err := h.root.Open(rel(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return inRootErr(err, p)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return inRootErr(err, p)
	}
	for _, n := range names {
		if err := h.root.RemoveAll(rel(path.Join(p, n))); err != nil {
			return inRootErr(err, path.Join(p, n))
		}
	}
	return nil
}

func (h *hostFS) removeAll(p string) error {
	return inRootErr(h.root.RemoveAll(rel(p)), p)
}
