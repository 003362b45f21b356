package main

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseOrder(t *testing.T) {
	got, err := parseOrder("# load order\nvirtio.ko\n\n  virtio_net.ko  \nmlx5_core.ko.xz\n")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"virtio.ko", "virtio_net.ko", "mlx5_core.ko.xz"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"../x.ko\n", "kernel/drivers/x.ko\n", "x.o\n", "x.ko\nx.ko\n", "..\n"} {
		if got, err := parseOrder(bad); err == nil {
			t.Errorf("parseOrder(%q) = %v, want an error", bad, got)
		}
	}
}

func TestModuleFlags(t *testing.T) {
	for name, want := range map[string]int{
		"e1000.ko": 0, "e1000.ko.xz": unix.MODULE_INIT_COMPRESSED_FILE,
		"e1000.ko.zst": unix.MODULE_INIT_COMPRESSED_FILE, "e1000.ko.gz": unix.MODULE_INIT_COMPRESSED_FILE,
	} {
		if got := moduleFlags(name); got != want {
			t.Errorf("moduleFlags(%s) = %d, want %d", name, got, want)
		}
	}
}

// TestLoadModulesKeepsGoing: modules load in the given order, and one that fails does not
// stop the rest.
func TestLoadModulesKeepsGoing(t *testing.T) {
	var tried []string
	broken := errors.New("no such device")
	loaded, failed := loadModules([]string{"a.ko", "b.ko", "c.ko"}, func(name string) error {
		tried = append(tried, name)
		if name == "b.ko" {
			return broken
		}
		return nil
	})
	if diff := cmp.Diff([]string{"a.ko", "b.ko", "c.ko"}, tried); diff != "" {
		t.Errorf("load order (-want +got):\n%s", diff)
	}
	if loaded != 2 || len(failed) != 1 || failed[0].Name != "b.ko" || !errors.Is(failed[0].Err, broken) {
		t.Errorf("loaded %d, failed %v; want 2 and b.ko", loaded, failed)
	}
}
