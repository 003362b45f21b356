// Package initramfs writes the archives Linux unpacks into its initial root file system: newc
// ("070701") cpio, optionally gzip-compressed, byte for byte the same for the same content.
//
// Reproducibility comes from what the archive leaves out: entries are sorted by path, every
// mtime is 0, owners are root, inode numbers are assigned in path order, and the gzip header
// carries neither a file name nor a time. Parent directories are added implicitly, so the
// kernel always meets a directory before what it contains.
package initramfs

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"sort"
	"strings"
)

// Mode bits of the newc header (cpio(5)); they are not Go's fs.FileMode bits.
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeCharDev = 0o020000
)

// ErrBadPath is returned for a name that is not a clean absolute path below "/".
var ErrBadPath = errors.New("initramfs: path must be clean, absolute and not /")

// Archive collects entries; the zero value is not usable, call New.
type Archive struct {
	entries map[string]entry // by clean absolute path
}

type entry struct {
	mode         uint32 // type and permission bits, newc encoding
	data         []byte
	major, minor uint32 // device number of a device node
}

// New returns an empty archive.
func New() *Archive { return &Archive{entries: map[string]entry{}} }

// File adds a regular file. Adding the same path twice is an error: a silent overwrite
// would hide a mistake in whatever assembles the image.
func (a *Archive) File(name string, perm fs.FileMode, data []byte) error {
	if uint64(len(data)) > math.MaxUint32 {
		return fmt.Errorf("initramfs: %s: %d bytes do not fit a newc header", name, len(data))
	}
	return a.add(name, entry{mode: modeRegular | permBits(perm), data: data})
}

// Dir adds a directory with the given permissions (implied parents get 0755).
func (a *Archive) Dir(name string, perm fs.FileMode) error {
	return a.add(name, entry{mode: modeDir | permBits(perm)})
}

// CharDevice adds a character device node, e.g. /dev/console (5, 1).
func (a *Archive) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return a.add(name, entry{mode: modeCharDev | permBits(perm), major: major, minor: minor})
}

// permBits converts Go's permission, setuid, setgid and sticky bits to the Unix ones.
func permBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func (a *Archive) add(name string, e entry) error {
	if !strings.HasPrefix(name, "/") || path.Clean(name) != name || name == "/" {
		return fmt.Errorf("%w: %q", ErrBadPath, name)
	}
	if _, dup := a.entries[name]; dup {
		return fmt.Errorf("initramfs: %s added twice", name)
	}
	a.entries[name] = e
	return nil
}

// sorted returns every entry, implied parent directories included, in path order. It fails
// when a path is used both as a directory and as something else.
func (a *Archive) sorted() ([]string, map[string]entry, error) {
	all := make(map[string]entry, len(a.entries))
	for name, e := range a.entries {
		all[name] = e
	}
	for name := range a.entries {
		for d := path.Dir(name); d != "/"; d = path.Dir(d) {
			e, ok := all[d]
			if !ok {
				all[d] = entry{mode: modeDir | 0o755}
				continue
			}
			if e.mode&0o170000 != modeDir {
				return nil, nil, fmt.Errorf("initramfs: %s is not a directory but holds %s", d, name)
			}
		}
	}
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	// A parent is a prefix of its children's paths, so plain byte order puts it first.
	sort.Strings(names)
	return names, all, nil
}

// WriteCPIO writes the archive as uncompressed newc cpio, trailer included.
func (a *Archive) WriteCPIO(w io.Writer) error {
	names, all, err := a.sorted()
	if err != nil {
		return err
	}
	cw := &cpioWriter{w: w}
	for i, name := range names {
		e := all[name]
		// Inode numbers only need to be distinct (the kernel hard-links entries that share
		// one and have nlink > 1); numbering in path order keeps them stable.
		cw.entry(uint32(i+1), strings.TrimPrefix(name, "/"), e)
	}
	cw.entry(0, "TRAILER!!!", entry{})
	return cw.err
}

// WriteGzip writes the archive as gzip-compressed newc cpio, the usual initrd format.
func (a *Archive) WriteGzip(w io.Writer) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	// The zero Header already has no name, no comment and mtime 0; set nothing.
	if err := a.WriteCPIO(gz); err != nil {
		return err
	}
	return gz.Close()
}

// WriteManifest lists the archive, one entry a line in path order: mode (octal, newc),
// size, sha256 of the content ("-" for anything but a file) and path. It makes two builds
// comparable without unpacking them.
func (a *Archive) WriteManifest(w io.Writer) error {
	names, all, err := a.sorted()
	if err != nil {
		return err
	}
	for _, name := range names {
		e := all[name]
		sum := "-"
		if e.mode&0o170000 == modeRegular {
			h := sha256.Sum256(e.data)
			sum = hex.EncodeToString(h[:])
		}
		if _, err := fmt.Fprintf(w, "%06o %9d %s %s\n", e.mode, len(e.data), sum, name); err != nil {
			return err
		}
	}
	return nil
}

// cpioWriter writes newc entries, padding to 4 bytes; the first error sticks.
type cpioWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) entry(ino uint32, name string, e entry) {
	nlink := uint32(1)
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	// Fields, all 8 hex digits: ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor (of the file system, unused), rdevmajor, rdevminor (of a device node),
	// namesize (with its NUL), check (0: no checksum in "070701").
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(e.data)
	c.pad()
}
