from agentledger import Ledger
def test_smoke(db_url):
    with Ledger(db_url, handle_signals=False) as L:
        L.record_llm("gpt-4o", 1000, 500, bot_id="b")
        L.record_llm("gpt-4o", 1000, 500, bot_id="b")
        assert L.flush()
        assert L.store.count() == 2
        evs = L.store.events()
        assert sum(e.cost_usd for e in evs) == L.totals(bot_id="b").cost_usd
        # replay is idempotent
        L.store.write([e.to_row() for e in evs])
        assert L.store.count() == 2
