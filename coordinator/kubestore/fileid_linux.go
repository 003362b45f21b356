package kubestore

import (
	"os"
	"syscall"
)

// fileKey identifies one content of a file without reading it. Size and modification time
// alone miss a file rewritten in place with the same size and its old mtime put back
// (cp -p, touch -r); the change time cannot be set back, and device and inode tell a file
// renamed over the old one apart from it.
type fileKey struct {
	size, mtime, ctime int64
	dev, ino           uint64
}

func keyOf(fi os.FileInfo) fileKey {
	k := fileKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.ctime = st.Ctim.Nano()
		k.dev, k.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return k
}
