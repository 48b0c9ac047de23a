"""Kafka for every service: topics, the event codec, publishing, consuming and dead letters.

- :mod:`~cumulus.kafka.topics`, :mod:`~cumulus.kafka.codec`: the topic table and protobuf values/keys.
- :mod:`~cumulus.kafka.publisher` (with :mod:`~cumulus.kafka.producer`, :mod:`~cumulus.kafka.inflight`
  and :mod:`~cumulus.kafka.spool`): acks=all, idempotent publishing that spools to disk while Kafka is down.
- :mod:`~cumulus.kafka.runtime`: the one consume loop (fetch -> handle -> acknowledged -> commit).
- :mod:`~cumulus.kafka.deadletter`: records a consumer could not use, kept with the reason.
- :mod:`~cumulus.kafka.admin`: creating and checking the topics.
"""
