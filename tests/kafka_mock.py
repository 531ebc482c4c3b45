"""A real Kafka-protocol broker on 127.0.0.1: librdkafka's mock cluster, loaded with ctypes from
the confluent-kafka wheel. Used by the tests and by datasets/kafka_sample/make_sample.py."""

from __future__ import annotations

import ctypes
import glob
import os

import confluent_kafka


def _librdkafka() -> ctypes.CDLL:
    libs = os.path.join(
        os.path.dirname(os.path.dirname(confluent_kafka.__file__)), "confluent_kafka.libs"
    )
    lib = ctypes.CDLL(glob.glob(os.path.join(libs, "librdkafka*.so*"))[0])
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    return lib


class MockCluster:
    """``with MockCluster() as kafka: kafka.create_topic("t", 3)``; stopped on exit."""

    def __init__(self, brokers: int = 1):
        self.brokers = brokers

    def __enter__(self) -> MockCluster:
        self.lib = lib = _librdkafka()
        err = ctypes.create_string_buffer(512)
        self.rk = lib.rd_kafka_new(0, lib.rd_kafka_conf_new(), err, 512)
        if not self.rk:
            raise RuntimeError(f"rd_kafka_new failed: {err.value.decode()}")
        self.mc = lib.rd_kafka_mock_cluster_new(self.rk, self.brokers)
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self.mc).decode()
        assert self.bootstrap.startswith("127.0.0.1:"), self.bootstrap
        return self

    def create_topic(self, name: str, partitions: int) -> None:
        if self.lib.rd_kafka_mock_topic_create(self.mc, name.encode(), partitions, 1) != 0:
            raise RuntimeError(f"cannot create topic {name}")

    def __exit__(self, *exc) -> None:
        self.lib.rd_kafka_mock_cluster_destroy(self.mc)
        self.lib.rd_kafka_destroy(self.rk)
