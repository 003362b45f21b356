package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Errors from the keyring.
var (
	// ErrNoKeyring: the keyring file is missing and creating it was not allowed, as on a
	// replica joining a coordinator cluster, which must be given the existing key.
	ErrNoKeyring = errors.New("keyring file does not exist")
	// ErrKeyringMismatch: the data was sealed with a different key than this keyring's.
	ErrKeyringMismatch = errors.New("sealed with another keyring")
	// ErrSealedCorrupt: the sealed data is malformed, was altered, or was sealed for another
	// purpose (additional data).
	ErrSealedCorrupt = errors.New("sealed data is corrupt")
)

const (
	keyringKeySize    = 32
	keyringFilePrefix = "deployme-keyring-v1:"
	keyringIDSize     = 8
	// sealedMagic versions the sealed layout so a future format can coexist in Raft.
	sealedMagic = "dk1"
	sealedHead  = len(sealedMagic) + keyringIDSize
)

// Keyring is the coordinator's symmetric key, the same on every replica, that encrypts
// private keys at rest in Raft: the Raft log and snapshots then never hold a usable CA key
// on their own.
type Keyring struct {
	id   [keyringIDSize]byte
	aead cipher.AEAD
}

// NewKeyring builds a keyring from a 32-byte key.
func NewKeyring(key []byte) (*Keyring, error) {
	if len(key) != keyringKeySize {
		return nil, fmt.Errorf("keyring: key is %d bytes, want %d", len(key), keyringKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	// Random 96-bit nonces keep the key safe for far more seals than a coordinator does
	// (a few per cluster), and need no counter shared between replicas.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k := &Keyring{aead: aead}
	sum := sha256.Sum256(key)
	copy(k.id[:], sum[:keyringIDSize])
	return k, nil
}

// ID identifies the key without revealing it: hex of the first 8 bytes of SHA-256(key).
func (k *Keyring) ID() string { return hex.EncodeToString(k.id[:]) }

// Seal encrypts with AES-256-GCM. aad binds the ciphertext to its purpose (e.g.
// "cls_x/ca.key"), so a blob copied to another field or cluster does not open.
// Layout: "dk1" | 8-byte key id | 12-byte nonce | ciphertext+tag.
func (k *Keyring) Seal(plaintext []byte, aad string) ([]byte, error) {
	out := make([]byte, sealedHead, sealedHead+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	copy(out, sealedMagic)
	copy(out[len(sealedMagic):], k.id[:])
	return k.aead.Seal(out, nil, plaintext, additionalData(out[:sealedHead], aad)), nil
}

// Open reverses Seal. It reports ErrKeyringMismatch before trying to decrypt, so that a
// replica started with the wrong keyring says so instead of calling the data corrupt.
func (k *Keyring) Open(sealed []byte, aad string) ([]byte, error) {
	if len(sealed) < sealedHead+k.aead.NonceSize()+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrSealedCorrupt, len(sealed))
	}
	if string(sealed[:len(sealedMagic)]) != sealedMagic {
		return nil, fmt.Errorf("%w: unknown format", ErrSealedCorrupt)
	}
	id := sealed[len(sealedMagic):sealedHead]
	if !bytes.Equal(id, k.id[:]) {
		return nil, fmt.Errorf("%w: sealed by keyring %s, this keyring is %s", ErrKeyringMismatch, hex.EncodeToString(id), k.ID())
	}
	plain, err := k.aead.Open(nil, nil, sealed[sealedHead:], additionalData(sealed[:sealedHead], aad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (altered, or sealed for another purpose than %q)", ErrSealedCorrupt, aad)
	}
	return plain, nil
}

// additionalData authenticates the header along with the caller's purpose, so that neither
// the format version nor the key id can be changed without detection.
func additionalData(head []byte, aad string) []byte {
	ad := make([]byte, 0, len(head)+len(aad))
	return append(append(ad, head...), aad...)
}

// LoadOrCreateKeyring reads the keyring at path: one line, "deployme-keyring-v1:" and the
// standard base64 of 32 bytes, mode 0600. When the file is missing and create is true it
// generates a key and writes it atomically; when create is false it returns ErrNoKeyring.
// A file that group or others can access, or with bad content, is refused.
func LoadOrCreateKeyring(path string, create bool) (*Keyring, error) {
	data, err := readKeyringFile(path)
	switch {
	case err == nil:
		return parseKeyringFile(path, data)
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil, fmt.Errorf("%w: %s", ErrNoKeyring, path)
	case errors.Is(err, fs.ErrNotExist):
		return createKeyring(path)
	default:
		return nil, err
	}
}

func readKeyringFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		// The wrapped *fs.PathError already names the path.
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring %s: not a regular file", path)
	}
	// The key decrypts every CA in Raft; refusing a loose file forces the operator to notice
	// rather than silently running with a key other accounts could have read.
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keyring %s: mode %04o gives access to group or others, want 0600", path, perm)
	}
	// A valid file is a few dozen bytes; cap the read so a wrong path cannot exhaust memory.
	const maxSize = 1024
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if len(data) > maxSize {
		return nil, fmt.Errorf("keyring %s: file too large", path)
	}
	return data, nil
}

func parseKeyringFile(path string, data []byte) (*Keyring, error) {
	line, ok := strings.CutSuffix(string(data), "\n")
	if !ok || strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("keyring %s: want exactly one line ending in a newline", path)
	}
	enc, ok := strings.CutPrefix(line, keyringFilePrefix)
	if !ok {
		return nil, fmt.Errorf("keyring %s: missing %q prefix", path, keyringFilePrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: key is not standard base64: %w", path, err)
	}
	if len(key) != keyringKeySize {
		return nil, fmt.Errorf("keyring %s: key is %d bytes, want %d", path, len(key), keyringKeySize)
	}
	return NewKeyring(key)
}

// createKeyring writes through a temporary file and a rename so that a crash leaves either
// no keyring or a complete one, never a truncated key that would lock the data away.
func createKeyring(path string) (*Keyring, error) {
	key := make([]byte, keyringKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	k, err := NewKeyring(key)
	if err != nil {
		return nil, err
	}
	content := keyringFilePrefix + base64.StdEncoding.EncodeToString(key) + "\n"

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	// CreateTemp already uses 0600; the explicit chmod documents the requirement and holds
	// whatever the umask or a future Go does.
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	committed = true
	// Without syncing the directory the rename itself may not survive a power loss.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("keyring %s: sync directory: %w", path, err)
		}
	}
	return k, nil
}

// SealedPKI is ClusterPKI with every private key sealed by the keyring: what Raft stores.
type SealedPKI struct {
	CACert, FrontProxyCACert, EtcdCACert, SAPub []byte // public, PEM
	CAKey, FrontProxyCAKey, EtcdCAKey, SAKey    []byte // sealed
	KeyringID                                   string
}

// SealPKI seals each private key with aad clusterID + "/" + its file name under
// /etc/kubernetes/pki, so keys cannot be swapped between fields or clusters unnoticed.
func (k *Keyring) SealPKI(p *ClusterPKI, clusterID string) (*SealedPKI, error) {
	if clusterID == "" {
		return nil, errors.New("seal PKI: empty cluster id")
	}
	s := &SealedPKI{
		CACert:           bytes.Clone(p.CACert),
		FrontProxyCACert: bytes.Clone(p.FrontProxyCACert),
		EtcdCACert:       bytes.Clone(p.EtcdCACert),
		SAPub:            bytes.Clone(p.SAPub),
		KeyringID:        k.ID(),
	}
	for _, f := range []struct {
		name     string
		plain    []byte
		sealedTo *[]byte
	}{
		{fileCAKey, p.CAKey, &s.CAKey},
		{fileFrontProxyKey, p.FrontProxyCAKey, &s.FrontProxyCAKey},
		{fileEtcdCAKey, p.EtcdCAKey, &s.EtcdCAKey},
		{fileSAKey, p.SAKey, &s.SAKey},
	} {
		sealed, err := k.Seal(f.plain, clusterID+"/"+f.name)
		if err != nil {
			return nil, fmt.Errorf("seal %s: %w", f.name, err)
		}
		*f.sealedTo = sealed
	}
	return s, nil
}

// OpenPKI unseals what SealPKI produced and verifies the result, so a bad pair is caught on
// the coordinator rather than by kubeadm on a host.
func (k *Keyring) OpenPKI(s *SealedPKI, clusterID string) (*ClusterPKI, error) {
	if clusterID == "" {
		return nil, errors.New("open PKI: empty cluster id")
	}
	if s.KeyringID != "" && s.KeyringID != k.ID() {
		return nil, fmt.Errorf("open PKI: %w: sealed by keyring %s, this keyring is %s", ErrKeyringMismatch, s.KeyringID, k.ID())
	}
	p := &ClusterPKI{
		CACert:           bytes.Clone(s.CACert),
		FrontProxyCACert: bytes.Clone(s.FrontProxyCACert),
		EtcdCACert:       bytes.Clone(s.EtcdCACert),
		SAPub:            bytes.Clone(s.SAPub),
	}
	for _, f := range []struct {
		name     string
		sealed   []byte
		openedTo *[]byte
	}{
		{fileCAKey, s.CAKey, &p.CAKey},
		{fileFrontProxyKey, s.FrontProxyCAKey, &p.FrontProxyCAKey},
		{fileEtcdCAKey, s.EtcdCAKey, &p.EtcdCAKey},
		{fileSAKey, s.SAKey, &p.SAKey},
	} {
		plain, err := k.Open(f.sealed, clusterID+"/"+f.name)
		if err != nil {
			return nil, fmt.Errorf("open PKI %s: %w", f.name, err)
		}
		*f.openedTo = plain
	}
	if err := p.Verify(); err != nil {
		return nil, fmt.Errorf("open PKI: %w", err)
	}
	return p, nil
}
