// Package artifacts installs binaries on a host from the coordinators' content-addressed
// artifact store (GET <base>/artifacts/sha256/<hex>): the Kubernetes binaries of an upgrade's
// target version. Nothing comes from the internet, and nothing is installed unless its size
// and SHA-256 are the ones the coordinator asked for.
//
// An installation is atomic: the download goes to a temporary file beside the destination,
// is checked, made durable and renamed over the destination. A running binary (the kubelet)
// keeps its old inode until it restarts, a crash leaves the old binary or the new one, and
// a failed or cancelled download leaves nothing behind.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/deployme/deployme/internal/atomicfile"
)

// pathPrefix is the store's route (coordinator/kubestore.PathPrefix, which the agent may not
// import).
const pathPrefix = "/artifacts/sha256/"

// Want is a binary to install: its content, by hash and size.
type Want struct {
	// Name names the binary in errors (kubeadm, kubelet, kubectl).
	Name string
	// SHA256 is the lowercase hex SHA-256 of the content.
	SHA256 string
	Size   int64
}

// ErrSize is a download longer or shorter than the size asked for.
var ErrSize = errors.New("wrong size")

// HashMismatchError is a download whose content is not the one asked for.
type HashMismatchError struct {
	URL       string
	Want, Got string
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("sha256 mismatch from %s: got %s, want %s", e.URL, e.Got, e.Want)
}

// Fetcher downloads from the coordinators' artifact stores.
type Fetcher struct {
	// Client makes the requests; nil uses http.DefaultClient. A download is bounded by the
	// context given to Install, not by a client timeout, which would cut a large binary
	// on a slow link.
	Client *http.Client
	// BaseURLs are the coordinators' HTTP addresses (http://host:port), tried in order.
	BaseURLs []string
}

// Install makes dest (a full path, e.g. <root>/usr/bin/kubeadm) the binary a, executable.
// It reports changed=false, without a request, when dest already has that content. Each
// base URL is tried in order until one gives the right content; the error otherwise names
// every URL and what went wrong with it.
func (f *Fetcher) Install(ctx context.Context, a Want, dest string) (changed bool, err error) {
	if err := a.validate(); err != nil {
		return false, err
	}
	if dest == "" {
		return false, fmt.Errorf("install %s: no destination", a.Name)
	}
	switch ok, err := installed(a, dest); {
	case err != nil:
		return false, fmt.Errorf("install %s: %w", a.Name, err)
	case ok:
		return fixMode(dest)
	}
	if len(f.BaseURLs) == 0 {
		return false, fmt.Errorf("install %s: no coordinator to download from", a.Name)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return false, fmt.Errorf("install %s: %w", a.Name, err)
	}
	var errs []error
	for _, base := range f.BaseURLs {
		url := strings.TrimSuffix(base, "/") + pathPrefix + a.SHA256
		err := f.download(ctx, a, url, dest)
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("install %s: %w", a.Name, ctx.Err())
		}
		errs = append(errs, err)
	}
	return false, fmt.Errorf("install %s (sha256 %s): no coordinator gave it: %w", a.Name, a.SHA256, errors.Join(errs...))
}

func (a Want) validate() error {
	if len(a.SHA256) != 64 || strings.Trim(a.SHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("install %s: %q is not a SHA-256 (64 lowercase hex digits)", a.Name, a.SHA256)
	}
	if a.Size < 0 {
		return fmt.Errorf("install %s: negative size %d", a.Name, a.Size)
	}
	return nil
}

// installed tells whether dest already holds a's content. A missing dest, or one of
// another size (no need to read it), is not an error: it is replaced.
func installed(a Want, dest string) (bool, error) {
	fi, err := os.Stat(dest)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != a.Size {
		return false, nil
	}
	sum, err := fileSHA256(dest)
	if err != nil {
		return false, err
	}
	return sum == a.SHA256, nil
}

// fixMode makes an installed binary executable if it is not (someone chmodded it): that is
// a change, though nothing was downloaded.
func fixMode(dest string) (bool, error) {
	fi, err := os.Stat(dest)
	if err != nil {
		return false, err
	}
	if fi.Mode().Perm() == 0o755 {
		return false, nil
	}
	if err := os.Chmod(dest, 0o755); err != nil {
		return false, err
	}
	return true, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// download fetches url into a temporary file beside dest, checks it and renames it over
// dest. Whatever goes wrong, the temporary file is removed and dest is left as it was.
func (f *Fetcher) download(ctx context.Context, a Want, url, dest string) (err error) {
	defer func() {
		// Every failure names the URL (a HashMismatchError does already).
		var named *HashMismatchError
		if err != nil && !errors.As(err, &named) {
			err = fmt.Errorf("%s: %w", url, err)
		}
	}()
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
		return ue.Err // without the URL again: the caller names it
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The store's error body says why; a little of it is enough.
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if resp.ContentLength >= 0 && resp.ContentLength != a.Size {
		return fmt.Errorf("%w: the server announces %d bytes, want %d", ErrSize, resp.ContentLength, a.Size)
	}

	// The temporary name starts with a dot and names the binary, so a leftover of a power
	// cut is recognisable; it is in dest's directory so that the rename is atomic.
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".download-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	// One byte more than wanted tells an oversize body from a complete one without
	// reading (or storing) more of it.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, a.Size+1))
	switch {
	case err != nil:
		return fmt.Errorf("after %d of %d bytes: %w", n, a.Size, err)
	case n > a.Size:
		return fmt.Errorf("%w: more than %d bytes", ErrSize, a.Size)
	case n < a.Size:
		return fmt.Errorf("%w: %d bytes, want %d", ErrSize, n, a.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return &HashMismatchError{URL: url, Want: a.SHA256, Got: got}
	}
	if err = tmp.Chmod(0o755); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	// A cancellation that came during the checks still wins: dest is not touched after it.
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), dest); err != nil {
		return err
	}
	// The rename is durable only once the directory is: without this a power cut could
	// bring back the old binary after the step reported the new one.
	return atomicfile.SyncDir(filepath.Dir(dest))
}
