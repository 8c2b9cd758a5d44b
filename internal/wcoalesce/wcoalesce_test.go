package wcoalesce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// pair returns a coalescing client end and the server end of a loopback
// TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w := New(c)
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s
}

// Writes from several goroutines arrive whole and, per writer, in order;
// with a reader slower than the writers, many writes share a syscall.
func TestOrderAndCoalescing(t *testing.T) {
	w, s := pair(t)
	const writers, each = 4, 5000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rec [16]byte
			for i := range each {
				binary.BigEndian.PutUint64(rec[:8], uint64(g))
				binary.BigEndian.PutUint64(rec[8:], uint64(i))
				if _, err := w.Write(rec[:]); err != nil {
					t.Error(err)
					return
				}
				clear(rec[:]) // Write copied it
			}
		}()
	}
	next := make([]uint64, writers)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		for n := 0; n < writers*each; n++ {
			if _, err := io.ReadFull(s, buf); err != nil {
				done <- err
				return
			}
			g, i := binary.BigEndian.Uint64(buf[:8]), binary.BigEndian.Uint64(buf[8:])
			if g >= writers || i != next[g] {
				done <- errors.New("out of order or torn record")
				return
			}
			next[g]++
		}
		done <- nil
	}()
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reader did not get every record")
	}
	writes, syscalls := w.Counts()
	if writes != writers*each {
		t.Errorf("%d writes counted, want %d", writes, writers*each)
	}
	if syscalls == 0 || syscalls >= writes {
		t.Errorf("%d writes became %d syscalls: nothing coalesced", writes, syscalls)
	}
	t.Logf("%d writes in %d syscalls", writes, syscalls)
}

// A failed write is sticky and closes the connection.
func TestErrorIsSticky(t *testing.T) {
	w, s := pair(t)
	s.Close()
	payload := bytes.Repeat([]byte("x"), 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write(payload)
		if err == nil {
			err = w.Flush()
		}
	}
	if err == nil {
		t.Fatal("writes to a closed peer never failed")
	}
	if _, err2 := w.Write([]byte("y")); err2 == nil {
		t.Error("a write after the failure succeeded")
	}
	if _, rerr := w.Read(make([]byte, 1)); rerr == nil {
		t.Error("the connection was not closed after the failure")
	}
}

// Pending bytes are bounded: with nobody reading, Write blocks instead of
// queueing without end, and Close releases it.
func TestPendingIsBounded(t *testing.T) {
	w, _ := pair(t)
	chunk := bytes.Repeat([]byte("z"), 256<<10)
	blocked := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	w.mu.Lock()
	pending := len(w.pending)
	w.mu.Unlock()
	if pending > MaxPending {
		t.Fatalf("%d bytes pending, bound %d", pending, MaxPending)
	}
	select {
	case err := <-blocked:
		t.Fatalf("writer stopped early: %v", err)
	default:
	}
	w.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the blocked Write")
	}
}
