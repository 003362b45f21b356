package pki_test

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/pki"
)

func testKeyring(t *testing.T, fill byte) *pki.Keyring {
	t.Helper()
	k, err := pki.NewKeyring(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKeyring(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := pki.NewKeyring(make([]byte, n)); err == nil {
			t.Errorf("NewKeyring accepted a %d-byte key", n)
		}
	}
	a, b := testKeyring(t, 1), testKeyring(t, 1)
	if a.ID() != b.ID() {
		t.Errorf("same key, different ids %s and %s", a.ID(), b.ID())
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(a.ID()) {
		t.Errorf("id %q is not 16 hex digits", a.ID())
	}
	if c := testKeyring(t, 2); c.ID() == a.ID() {
		t.Error("different keys share an id")
	}
}

func TestSealOpen(t *testing.T) {
	k := testKeyring(t, 1)
	tests := []struct {
		name      string
		plaintext []byte
	}{
		{"empty", []byte{}},
		{"short", []byte("x")},
		{"key sized", bytes.Repeat([]byte("k"), 4096)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := k.Seal(tt.plaintext, "cls_x/ca.key")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(sealed, []byte("dk1")) {
				t.Errorf("sealed data starts %q, want dk1", sealed[:3])
			}
			if want := 3 + 8 + 12 + len(tt.plaintext) + 16; len(sealed) != want {
				t.Errorf("sealed length %d, want %d", len(sealed), want)
			}
			got, err := k.Open(sealed, "cls_x/ca.key")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("round trip gave %q, want %q", got, tt.plaintext)
			}
		})
	}

	a, _ := k.Seal([]byte("same"), "p")
	b, _ := k.Seal([]byte("same"), "p")
	if bytes.Equal(a, b) {
		t.Error("sealing twice gave identical output; nonces are not fresh")
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKeyring(t, 1)
	sealed, err := k.Seal([]byte("secret key material"), "cls_x/ca.key")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name    string
		keyring *pki.Keyring
		sealed  []byte
		aad     string
		wantErr error
	}{
		{"wrong aad", k, sealed, "cls_x/etcd/ca.key", pki.ErrSealedCorrupt},
		{"aad of another cluster", k, sealed, "cls_y/ca.key", pki.ErrSealedCorrupt},
		{"tampered magic", k, flip(0), "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"tampered nonce", k, flip(3 + 8), "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"tampered ciphertext", k, flip(3 + 8 + 12), "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"tampered tag", k, flip(len(sealed) - 1), "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"tampered key id", k, flip(3), "cls_x/ca.key", pki.ErrKeyringMismatch},
		{"truncated", k, sealed[:len(sealed)-1], "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"too short", k, sealed[:20], "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"empty", k, nil, "cls_x/ca.key", pki.ErrSealedCorrupt},
		{"another keyring", testKeyring(t, 2), sealed, "cls_x/ca.key", pki.ErrKeyringMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keyring.Open(tt.sealed, tt.aad)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %q, %v; want %v", got, err, tt.wantErr)
			}
		})
	}

	t.Run("mismatch names both keyrings", func(t *testing.T) {
		other := testKeyring(t, 2)
		_, err := other.Open(sealed, "cls_x/ca.key")
		if err == nil || !strings.Contains(err.Error(), k.ID()) || !strings.Contains(err.Error(), other.ID()) {
			t.Errorf("error %v does not name both %s and %s", err, k.ID(), other.ID())
		}
	})
}

func TestLoadOrCreateKeyring(t *testing.T) {
	// A missing parent directory is created: the state directory may not exist on first start.
	path := filepath.Join(t.TempDir(), "state", "keyring")

	created, err := pki.LoadOrCreateKeyring(path, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("keyring created with mode %04o, want 0600", perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^deployme-keyring-v1:[A-Za-z0-9+/]{43}=\n$`).Match(data) {
		t.Errorf("keyring file content %q has the wrong format", data)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after create, want only the keyring", len(entries))
	}

	for _, create := range []bool{false, true} {
		loaded, err := pki.LoadOrCreateKeyring(path, create)
		if err != nil {
			t.Fatalf("reload (create=%v): %v", create, err)
		}
		if loaded.ID() != created.ID() {
			t.Errorf("reload (create=%v) gave id %s, want %s", create, loaded.ID(), created.ID())
		}
	}
	loaded, _ := pki.LoadOrCreateKeyring(path, false)
	sealed, err := created.Seal([]byte("k"), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Open(sealed, "a"); err != nil {
		t.Errorf("reloaded keyring cannot open what the created one sealed: %v", err)
	}
}

func TestLoadOrCreateKeyringMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	_, err := pki.LoadOrCreateKeyring(path, false)
	if !errors.Is(err, pki.ErrNoKeyring) {
		t.Fatalf("err = %v, want ErrNoKeyring", err)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("create=false left a file behind (stat: %v)", statErr)
	}
}

func TestLoadOrCreateKeyringRefuses(t *testing.T) {
	valid := "deployme-keyring-v1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
	}{
		{"world readable", valid, 0o644},
		{"group readable", valid, 0o640},
		{"group writable", valid, 0o620},
		{"empty", "", 0o600},
		{"no prefix", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n", 0o600},
		{"other version", strings.Replace(valid, "v1", "v2", 1), 0o600},
		{"no newline", strings.TrimSuffix(valid, "\n"), 0o600},
		{"two lines", valid + valid, 0o600},
		{"crlf", strings.TrimSuffix(valid, "\n") + "\r\n", 0o600},
		{"not base64", "deployme-keyring-v1:!!!!\n", 0o600},
		{"url base64", "deployme-keyring-v1:" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)) + "\n", 0o600},
		{"short key", "deployme-keyring-v1:" + base64.StdEncoding.EncodeToString(make([]byte, 16)) + "\n", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring")
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			// WriteFile is subject to the umask; set the mode under test exactly.
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			for _, create := range []bool{false, true} {
				k, err := pki.LoadOrCreateKeyring(path, create)
				if err == nil {
					t.Fatalf("create=%v: loaded keyring %s, want an error", create, k.ID())
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("create=%v: error %q does not name %s", create, err, path)
				}
				if errors.Is(err, pki.ErrNoKeyring) {
					t.Errorf("create=%v: existing file reported as missing", create)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tt.content {
				t.Errorf("refused keyring file was changed (err %v)", err)
			}
		})
	}

	t.Run("directory", func(t *testing.T) {
		path := t.TempDir()
		if err := os.Chmod(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := pki.LoadOrCreateKeyring(path, true); err == nil {
			t.Fatal("loaded a directory as a keyring")
		}
	})
}

func TestSealPKI(t *testing.T) {
	p := newTestPKI(t)
	k := testKeyring(t, 1)
	s, err := k.SealPKI(p, "cls_x")
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyringID != k.ID() {
		t.Errorf("KeyringID %q, want %q", s.KeyringID, k.ID())
	}
	if diff := cmp.Diff(
		[][]byte{p.CACert, p.FrontProxyCACert, p.EtcdCACert, p.SAPub},
		[][]byte{s.CACert, s.FrontProxyCACert, s.EtcdCACert, s.SAPub},
	); diff != "" {
		t.Errorf("public material changed by sealing (-want +got):\n%s", diff)
	}

	for _, tt := range []struct {
		name          string
		plain, sealed []byte
	}{
		{"ca.key", p.CAKey, s.CAKey},
		{"front-proxy-ca.key", p.FrontProxyCAKey, s.FrontProxyCAKey},
		{"etcd/ca.key", p.EtcdCAKey, s.EtcdCAKey},
		{"sa.key", p.SAKey, s.SAKey},
	} {
		t.Run(tt.name+" is sealed", func(t *testing.T) {
			block, _ := pem.Decode(tt.plain)
			if block == nil {
				t.Fatal("plaintext key is not PEM")
			}
			b64 := base64.StdEncoding.EncodeToString(block.Bytes)
			for what, needle := range map[string][]byte{
				"PEM":            tt.plain,
				"DER":            block.Bytes,
				"base64 prefix":  []byte(b64[:32]),
				"PEM block type": []byte("PRIVATE KEY"),
			} {
				if bytes.Contains(tt.sealed, needle) {
					t.Errorf("sealed blob contains the key's %s", what)
				}
			}
		})
	}

	opened, err := k.OpenPKI(s, "cls_x")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, opened); diff != "" {
		t.Errorf("OpenPKI(SealPKI(p)) differs (-want +got):\n%s", diff)
	}
}

func TestOpenPKIRejects(t *testing.T) {
	p := newTestPKI(t)
	k := testKeyring(t, 1)
	s, err := k.SealPKI(p, "cls_x")
	if err != nil {
		t.Fatal(err)
	}
	swappedKeys := *s
	swappedKeys.CAKey, swappedKeys.EtcdCAKey = s.EtcdCAKey, s.CAKey
	otherPub := *s
	otherPub.CACert = newTestPKI(t).CACert
	unlabelled := *s
	unlabelled.KeyringID = ""

	tests := []struct {
		name      string
		keyring   *pki.Keyring
		sealed    *pki.SealedPKI
		clusterID string
		wantErr   error
	}{
		{"another cluster id", k, s, "cls_y", pki.ErrSealedCorrupt},
		{"keys swapped between fields", k, &swappedKeys, "cls_x", pki.ErrSealedCorrupt},
		{"another keyring", testKeyring(t, 2), s, "cls_x", pki.ErrKeyringMismatch},
		{"another keyring, id not recorded", testKeyring(t, 2), &unlabelled, "cls_x", pki.ErrKeyringMismatch},
		{"certificate replaced", k, &otherPub, "cls_x", nil},
		{"empty cluster id", k, s, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keyring.OpenPKI(tt.sealed, tt.clusterID)
			if err == nil {
				t.Fatalf("OpenPKI = %v, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}

	if _, err := k.SealPKI(p, ""); err == nil {
		t.Error("SealPKI accepted an empty cluster id")
	}
}
