from tests.xdist_redis import worker_redis_url


def test_the_first_worker_keeps_the_database():
    assert worker_redis_url("redis://127.0.0.1:6379/15", 0) == "redis://127.0.0.1:6379/15"


def test_later_workers_take_the_databases_below():
    assert worker_redis_url("redis://127.0.0.1:6379/15", 2) == "redis://127.0.0.1:6379/13"
    assert worker_redis_url("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/15"


def test_the_unix_socket_form_keeps_it_in_the_query():
    assert worker_redis_url("unix:///run/redis.sock?db=15", 1) == "unix:///run/redis.sock?db=14"
