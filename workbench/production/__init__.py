"""The production loop: an update service learning from Kafka, a model store of versions,
replicas serving them, and the feedback of served predictions joined with their labels."""
