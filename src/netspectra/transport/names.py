"""Names the probe and the engines agree on (light: the command line reads them for its defaults)."""

#: Shard subjects ``<subject>.<shard>`` when none is configured.
DEFAULT_SHARDS = 16
#: Queue group of the engines: each message reaches exactly one engine of the group.
DEFAULT_QUEUE_GROUP = "netspectra-engine"
#: JetStream stream that stores the packet subjects when JetStream is used.
DEFAULT_STREAM = "NETSPECTRA_PACKETS"
