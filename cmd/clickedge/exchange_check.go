package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// checkExchangeExists reports an error unless the broker at url has an
// exchange called name. It declares nothing (a passive declare): `outbox
// replay -exchange` must never create an exchange that a typo named, where
// the replayed clicks would reach no queue (harden #14).
func checkExchangeExists(url, name string, timeout time.Duration) error {
	conn, err := amqp.DialConfig(url, amqp.Config{
		Dial:       amqp.DefaultDial(timeout),
		Properties: amqp.Table{"connection_name": "clickedge outbox replay (exchange check)"},
	})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) {
			return fmt.Errorf("cannot reach the broker: %s", redactURL(err.Error()))
		}
		return fmt.Errorf("cannot reach the broker: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open a channel: %w", err)
	}
	defer ch.Close()
	err = ch.ExchangeDeclarePassive(name, "topic", true, false, false, false, nil)
	var ae *amqp.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return fmt.Errorf("-exchange %q: no such exchange on the broker; replay never creates one: "+
			"declare it first (a durable topic exchange, bound to the queues that should get the clicks), "+
			"or leave -exchange out to publish to each record's own exchange", name)
	case errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed:
		return nil // it exists, with another type or flags: the publish will say so if that matters
	}
	return fmt.Errorf("-exchange %q: %w", name, err)
}
