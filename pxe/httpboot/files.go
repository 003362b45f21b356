package httpboot

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// asset is one served file (vmlinuz or initrd.img) with its SHA-256 cached. The digest is
// recomputed when the file at the path is no longer the one hashed (another inode, size or
// modification time), so replacing the image, in place or by rename, is picked up by the
// next request without a restart.
type asset struct {
	path string

	mu   sync.Mutex // held while hashing, so concurrent boots hash a new file once
	info fs.FileInfo
	sum  [sha256.Size]byte
}

// opened is an open asset with the digest of exactly the content behind f.
type opened struct {
	f    *os.File
	info fs.FileInfo
	sum  [sha256.Size]byte
}

func (o opened) etag() string   { return `"` + hex.EncodeToString(o.sum[:]) + `"` }
func (o opened) digest() string { return "sha-256=" + base64.StdEncoding.EncodeToString(o.sum[:]) }

// open opens the file and returns it with its digest; the caller closes it. The digest
// is computed from the same descriptor that is served, so the two cannot disagree even if
// the file is replaced meanwhile (short of an in-place rewrite during the request, which
// the next request, seeing a new modification time, hashes again).
func (a *asset) open() (opened, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return opened{}, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return opened{}, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return opened{}, fmt.Errorf("%s is not a regular file", a.path)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.info == nil || !os.SameFile(a.info, info) || a.info.Size() != info.Size() || !a.info.ModTime().Equal(info.ModTime()) {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			f.Close()
			return opened{}, fmt.Errorf("hashing %s: %w", a.path, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return opened{}, err
		}
		a.info = info
		copy(a.sum[:], h.Sum(nil))
	}
	return opened{f: f, info: info, sum: a.sum}, nil
}

// sha256 returns the hex digest of the file as it would be served now.
func (a *asset) sha256() (string, error) {
	o, err := a.open()
	if err != nil {
		return "", err
	}
	o.f.Close()
	return hex.EncodeToString(o.sum[:]), nil
}
