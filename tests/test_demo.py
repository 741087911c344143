"""`make demo` is part of the product: the whole story must keep working end to end."""

from bot.demo import main_async


async def test_demo_tells_the_whole_story_and_stops_everything(capsys):
    assert await main_async() == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    for expected in ("ping answered 200", "forged signature is refused: 401", "👀", "Live on staging",
                     "nothing was deployed to production", "production check run: success",
                     "serves Worker version 1 again", "rollback", "Demo complete",
                     "static assets from the CI artifact are served at /", "KV namespace bound as CACHE",
                     "'Waiting for build' while CI run", "the preview answers with the PR's code",
                     "after a push the same URL serves export const answer = 45;", "its URL answers 404"):
        assert expected in out, expected
    assert "FAIL" not in out
