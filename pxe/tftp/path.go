package tftp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// maxNameLen bounds a requested name: the served names are short, and a long name is either
// a mistake or a probe; 255 is the usual file-name limit.
const maxNameLen = 255

// cleanPath returns the name a request refers to, relative to the assets directory, or
// ErrAccessViolation. It accepts only names already in canonical form (path.Clean leaves them
// unchanged) instead of normalising hostile input: "a/../b" is refused rather than turned into
// "b", so what is logged and matched against the allowlist is exactly what the client sent,
// minus the one leading "/" that PXE ROMs commonly prepend.
func cleanPath(name string) (string, error) {
	if name == "" || len(name) > maxNameLen {
		return "", fmt.Errorf("%w: name length %d", ErrAccessViolation, len(name))
	}
	for i := 0; i < len(name); i++ {
		// Control bytes (NUL among them) and backslashes have no place in the names served;
		// a backslash is a path separator for some clients and servers, so "..\x" must
		// not get a chance to mean "../x" anywhere.
		if c := name[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", fmt.Errorf("%w: byte %#x in name", ErrAccessViolation, c)
		}
	}
	rel := strings.TrimPrefix(name, "/")
	switch {
	case rel == "", rel == ".", rel == "..", strings.HasPrefix(rel, "../"), strings.HasPrefix(rel, "/"):
		return "", fmt.Errorf("%w: name leaves the assets directory", ErrAccessViolation)
	case path.Clean(rel) != rel:
		return "", fmt.Errorf("%w: name is not in canonical form", ErrAccessViolation)
	}
	return rel, nil
}

// openAsset opens a listed name below dir. os.Root resolves every component, symbolic links
// included, and refuses any that leads outside dir (and absolute symbolic links), so a link
// planted in the assets directory cannot expose the rest of the file system.
func openAsset(dir, rel string) (*os.File, fs.FileInfo, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: assets directory: %w", ErrNotFound, err)
	}
	defer root.Close()
	// O_NONBLOCK: opening a FIFO someone left in the directory must not hang the transfer
	// goroutine; it has no effect on regular files.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		// Escaping symbolic links, loops and permission errors alike.
		return nil, nil, fmt.Errorf("%w: %w", ErrAccessViolation, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s is not a regular file", ErrAccessViolation, rel)
	}
	return f, st, nil
}
