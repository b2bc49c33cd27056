package hydraserver

import (
	"errors"
	"net"
	"strconv"
	"testing"
)

// occupiedPort is a loopback port held by a listener until the test ends.
func occupiedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func hydraBinary(t *testing.T) string {
	t.Helper()
	bin, err := Binary("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// A port picked free and taken before Hydra binds it (CI saw it once) costs
// a retry on fresh ports, not the test that started Hydra.
func TestStartRetriesWhenAPickedPortIsTaken(t *testing.T) {
	bin := hydraBinary(t)
	taken := occupiedPort(t)
	picks := 0
	pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return FreePort()
	}
	t.Cleanup(func() { pickPort = FreePort })

	h, err := Start(bin, "memory")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer h.Stop()
	if picks < 4 {
		t.Fatalf("ports picked %d times, want a second pair after the taken one", picks)
	}
}

// A port the caller named is the caller's to free: no retry, and the error
// says the port was taken.
func TestStartWithANamedTakenPortFails(t *testing.T) {
	bin := hydraBinary(t)
	_, err := StartWith(bin, "memory", Config{AdminPort: occupiedPort(t)})
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("got %v, want errPortTaken", err)
	}
}

// FreePort keeps out of the ephemeral range, where outgoing connections take
// their ports, and what it returns can be bound.
func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	if low == 0 {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range here")
	}
	for range 20 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowestPicked || port >= low {
			t.Fatalf("port %d, want in [%d, %d)", port, lowestPicked, low)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", port, err)
		}
		_ = l.Close()
	}
}
