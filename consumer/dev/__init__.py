"""What only development and tests use: the local Apache Kafka broker launcher, the
local job (`loyalty-consumer local`), sample webhooks, topic creation and the signers
that sign samples the way each provider does.

The runtime modules (everything outside this package) never import it; a test holds
that line (tests/unit/test_layering.py).
"""
