package coordclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/deployme/deployme/internal/atomicfile"
)

// Files of the state directory. identity.json is written last, so its presence means the
// others are complete.
const (
	identityFile = "identity.json"
	keyFile      = "agent.key"
	certFile     = "agent.crt"
	caFile       = "ca.crt"
)

// identity is identity.json.
type identity struct {
	HostID       string   `json:"host_id"`
	InfraID      string   `json:"infra_id"`
	Coordinators []string `json:"coordinators"`
}

// stateDir reads and writes the agent's durable identity.
type stateDir string

func (d stateDir) path(name string) string { return filepath.Join(string(d), name) }

func (d stateDir) ensure() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	// MkdirAll keeps an existing directory's mode; the key lives here, so tighten it.
	return os.Chmod(string(d), 0o700)
}

// loadIdentity returns nil, nil when the agent never registered.
func (d stateDir) loadIdentity() (*identity, error) {
	b, err := os.ReadFile(d.path(identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(identityFile), err)
	}
	if id.HostID == "" {
		return nil, fmt.Errorf("%s: no host_id", d.path(identityFile))
	}
	return &id, nil
}

func (d stateDir) saveIdentity(id *identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(d.path(identityFile), append(b, '\n'), 0o600)
}

// loadOrCreateKey reuses agent.key when a previous registration attempt left one.
func (d stateDir) loadOrCreateKey() (*ecdsa.PrivateKey, error) {
	key, err := d.loadKey()
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(d.path(keyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

func (d stateDir) loadKey() (*ecdsa.PrivateKey, error) {
	der, err := readPEM(d.path(keyFile), "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(keyFile), err)
	}
	return key, nil
}

func (d stateDir) loadCert(name string) (*x509.Certificate, error) {
	der, err := readPEM(d.path(name), "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(name), err)
	}
	return c, nil
}

func (d stateDir) saveCert(name string, der []byte, mode os.FileMode) error {
	return writeAtomic(d.path(name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), mode)
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%s: no %s PEM block", path, typ)
	}
	return block.Bytes, nil
}

// writeAtomic replaces path with data: a crash leaves either the old file or the new one,
// never a torn one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}
