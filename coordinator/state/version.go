package state

import "fmt"

// UpgradeAllowed is the version rule: a newer patch of the same minor, or exactly one minor up.
func UpgradeAllowed(from, to string) error {
	fm, fmi, fp, err1 := ParseVersion(from)
	tm, tmi, tp, err2 := ParseVersion(to)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot compare versions %q and %q", from, to)
	}
	switch {
	case tm != fm:
		return fmt.Errorf("cannot upgrade across major versions (%s to %s)", from, to)
	case tmi == fmi && tp > fp, tmi == fmi+1:
		return nil
	case tmi == fmi && tp == fp:
		return fmt.Errorf("cluster already runs %s", to)
	case tmi < fmi || (tmi == fmi && tp < fp):
		return fmt.Errorf("cannot downgrade from %s to %s", from, to)
	default:
		return fmt.Errorf("upgrade one minor version at a time: from %s the next is v%d.%d.x, not %s", from, fm, fmi+1, to)
	}
}

// ParseVersion reads "v1.37.2".
func ParseVersion(v string) (major, minor, patch int, err error) {
	var rest string
	if n, _ := fmt.Sscanf(v, "v%d.%d.%d%s", &major, &minor, &patch, &rest); n < 3 || rest != "" {
		return 0, 0, 0, fmt.Errorf("version %q is not of the form v1.2.3", v)
	}
	// The round trip rejects leading zeros and signs; %d still reads "-1", so say no to
	// negative numbers explicitly.
	if fmt.Sprintf("v%d.%d.%d", major, minor, patch) != v || major < 0 || minor < 0 || patch < 0 {
		return 0, 0, 0, fmt.Errorf("version %q is not of the form v1.2.3", v)
	}
	return major, minor, patch, nil
}
