//go:build !linux

package kubestore

import "os"

// fileKey identifies one content of a file without reading it. Hosts and coordinators run
// Linux (fileid_linux.go); elsewhere (a developer's laptop) size and modification time have
// to do.
type fileKey struct {
	size, mtime int64
}

func keyOf(fi os.FileInfo) fileKey {
	return fileKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
