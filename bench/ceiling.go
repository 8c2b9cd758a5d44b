package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/clickedge/clickedge/internal/wcoalesce"
	amqp "github.com/rabbitmq/amqp091-go"
)

// CeilingRun is the broker's own ceiling on this machine: a bare amqp091
// publisher, nothing else running, publishing persistent messages shaped
// like clickedge's (same properties and headers, a body of the same size)
// to a durable queue of the bench's kind, with a window of unconfirmed
// publishes. The drain target is read against it: what the broker can
// confirm at all bounds what any forwarder drains.
type CeilingRun struct {
	Rep        int       `json:"rep"`
	At         time.Time `json:"at"`
	Window     int       `json:"window"`
	Coalesced  bool      `json:"coalesced"` // socket writes coalesced, as clickedge's forwarder does
	BodyBytes  int       `json:"body_bytes"`
	Seconds    float64   `json:"seconds"`
	Confirmed  int64     `json:"confirmed"`
	Rate       float64   `json:"rate"` // confirms/s
	CPU        CPUUse    `json:"cpu"`  // Server is the publisher
	BrokerPer1 float64   `json:"broker_per_1k_s"`
}

// ceilingResult is what the ceiling subcommand prints.
type ceilingResult struct {
	Published int64   `json:"published"`
	Confirmed int64   `json:"confirmed"`
	Seconds   float64 `json:"seconds"`
	Queue     string  `json:"queue"` // its own, deleted before it returns
}

// ceilingRun runs the ceiling subcommand as a child on the server's CPUs.
func (b *bencher) ceilingRun(rep int, coalesced bool) (CeilingRun, error) {
	p := b.plan
	r := CeilingRun{Rep: rep, At: time.Now(), Window: 4096, Coalesced: coalesced, BodyBytes: 300, Seconds: p.Outage.Seconds() / 4}
	if r.Seconds < 3 {
		r.Seconds = 3
	}
	argv := []string{b.self, "ceiling", "-amqp", b.opts.amqpURL, "-queue", b.opts.queue,
		"-window", strconv.Itoa(r.Window), "-body", strconv.Itoa(r.BodyBytes),
		"-duration", time.Duration(r.Seconds * float64(time.Second)).String(), "-coalesce=" + strconv.FormatBool(coalesced)}
	if p.ServerCPUs != "" {
		argv = append([]string{"taskset", "-c", p.ServerCPUs}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = childEnv(nil)
	if p.ServerProcs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(p.ServerProcs))
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return r, err
	}
	cpu := newCPUMeter(cmd.Process.Pid)
	// The child connects and declares before it publishes; the meter runs
	// over its whole life, so the rate below uses the child's own clock.
	waitErr := cmd.Wait()
	r.CPU = cpu.read()
	// The meter reads /proc, which a reaped child has left: take its CPU
	// from the wait status instead.
	if st := cmd.ProcessState; st != nil {
		if wall := time.Since(cpu.start).Seconds(); wall > 0 {
			r.CPU.Server = (st.UserTime() + st.SystemTime()).Seconds() / wall
		}
	}
	if waitErr != nil {
		return r, fmt.Errorf("ceiling: %v: %s", waitErr, bytes.TrimSpace(errb.Bytes()))
	}
	var res ceilingResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return r, fmt.Errorf("ceiling: %v: %q", err, out.String())
	}
	r.Confirmed, r.Seconds = res.Confirmed, res.Seconds
	if res.Seconds > 0 {
		r.Rate = float64(res.Confirmed) / res.Seconds
	}
	if r.Rate > 0 {
		r.BrokerPer1 = r.CPU.Broker / r.Rate * 1000
	}
	return r, nil
}

// cmdCeiling publishes as fast as the broker confirms, for -duration, and
// prints a ceilingResult. Its exchange and queue are its own (deleted at
// the end), so the bench's delivery check never sees these messages.
func cmdCeiling(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ceiling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `URL`")
	kind := fs.String("queue", "classic", "queue kind, as run's -queue")
	window := fs.Int("window", 4096, "publishes awaiting their confirm")
	body := fs.Int("body", 300, "message body `bytes`")
	d := fs.Duration("duration", 10*time.Second, "how long to publish")
	coalesce := fs.Bool("coalesce", false, "coalesce the publishes' socket writes (internal/wcoalesce)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res, err := publishCeiling(*url, *kind, *window, *body, *d, *coalesce)
	if err != nil {
		fmt.Fprintln(stderr, "bench ceiling:", err)
		return 1
	}
	json.NewEncoder(stdout).Encode(res)
	return 0
}

func publishCeiling(url, kind string, window, bodyBytes int, d time.Duration, coalesce bool) (ceilingResult, error) {
	var res ceilingResult
	if window < 1 || bodyBytes < 2 {
		return res, errors.New("window and body must be positive")
	}
	var id [4]byte
	rand.Read(id[:])
	name := "bench.ceiling." + hex.EncodeToString(id[:])
	res.Queue = name
	cfg := amqp.Config{Properties: amqp.Table{"connection_name": "bench ceiling"}}
	if coalesce {
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 30*time.Second)
			if err != nil {
				return nil, err
			}
			return wcoalesce.New(c), nil
		}
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return res, err
	}
	durable, args := queueArgs(kind)
	if err = ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err == nil {
		if _, err = ch.QueueDeclare(name, durable, false, false, false, args); err == nil {
			err = ch.QueueBind(name, "click.#", name, false, nil)
		}
	}
	if err != nil {
		return res, fmt.Errorf("declare: %w", err)
	}
	defer func() {
		if c, err := conn.Channel(); err == nil {
			c.QueueDelete(name, false, false, false)
			c.ExchangeDelete(name, false, false)
			c.Close()
		}
	}()
	if err := ch.Confirm(false); err != nil {
		return res, err
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+1))
	// The properties and headers clickedge's forwarder sets (outbox/rabbit).
	headers := amqp.Table{"region": "bench", "node": "bench-1", "schema": int64(1)}
	payload := bytes.Repeat([]byte("x"), bodyBytes)
	payload[0], payload[len(payload)-1] = '"', '"'
	msgID := make([]byte, 26)
	ctx := context.Background()
	inflight := 0
	begin := time.Now()
	end := begin.Add(d)
	for time.Now().Before(end) || inflight > 0 {
		for inflight < window && time.Now().Before(end) {
			n := strconv.AppendInt(msgID[:0], res.Published, 36)
			err := ch.PublishWithContext(ctx, name, "click.bench", true, false, amqp.Publishing{
				Headers: headers, ContentType: "application/json", DeliveryMode: amqp.Persistent,
				MessageId: string(n), Timestamp: time.Now(), AppId: "clickedge", Body: payload,
			})
			if err != nil {
				return res, err
			}
			res.Published++
			inflight++
		}
		select {
		case c, ok := <-confirms:
			if !ok {
				return res, errors.New("channel closed")
			}
			inflight--
			if c.Ack {
				res.Confirmed++
			}
		case <-time.After(30 * time.Second):
			return res, errors.New("no confirm for 30s")
		}
	}
	res.Seconds = time.Since(begin).Seconds()
	return res, nil
}
