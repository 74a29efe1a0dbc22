"""Demo events: a curated Kenyan catalogue and a fast bulk generator (development only).

`seed_demo_events` is what `tiketi seed-demo` and `tiketi dev` call. The curated events go
through `EventService` (the same rules as the API: validation, tiers, publishing) and are
idempotent by title. `generate_events` writes thousands of realistic published events with
Core bulk INSERTs, bypassing the services on purpose: it exists to give search and listings a
catalogue the size of production (100,000 events in well under a minute).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Insert, Table, Text, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from tiketi.events.models import Category, Event, EventStatus, TicketType
from tiketi.events.schemas import EventCreate, TicketTypeCreate
from tiketi.events.service import EventService
from tiketi.users.repository import UserRepository

NAIROBI = "Africa/Nairobi"


@dataclass(frozen=True)
class CuratedEvent:
    title: str
    category: str
    city: str
    venue: str
    description: str
    tags: tuple[str, ...]
    days_ahead: int
    hour: int  # local start hour (East Africa Time, UTC+3)
    hours: int  # duration
    early_bird: int
    regular: int
    vip: int
    capacity: int


CURATED_EVENTS: tuple[CuratedEvent, ...] = (
    CuratedEvent(
        "Nairobi Jazz Festival",
        "music",
        "Nairobi",
        "Carnivore Grounds",
        "Two stages of Kenyan and East African jazz under the stars, with saxophonists, "
        "benga-jazz fusion bands and late-night jam sessions. Food trucks and craft bars on site.",
        ("jazz", "live music", "outdoor"),
        18,
        16,
        8,
        2000,
        3000,
        7500,
        3000,
    ),
    CuratedEvent(
        "Safari Sevens Rugby",
        "sports",
        "Nairobi",
        "Nyayo National Stadium",
        "Kenya's international rugby sevens tournament: Shujaa take on visiting sides over a "
        "weekend of fast, free-flowing rugby. Family stands and fan zone.",
        ("rugby", "sevens", "shujaa"),
        32,
        10,
        9,
        800,
        1200,
        4000,
        20000,
    ),
    CuratedEvent(
        "Mashemeji Derby: Gor Mahia vs AFC Leopards",
        "sports",
        "Nairobi",
        "Moi International Sports Centre Kasarani",
        "The oldest rivalry in Kenyan football. K'Ogalo against Ingwe, Kasarani in full voice.",
        ("football", "derby", "fkf premier league"),
        12,
        15,
        3,
        300,
        500,
        2500,
        40000,
    ),
    CuratedEvent(
        "Ngong Races Derby Day",
        "sports",
        "Nairobi",
        "Ngong Racecourse",
        "The Kenya Derby at Ngong Racecourse: thoroughbred racing, hats, picnics and a "
        "sundowner in the members' enclosure.",
        ("horse racing", "derby", "picnic"),
        45,
        12,
        7,
        1000,
        1500,
        6000,
        5000,
    ),
    CuratedEvent(
        "Kigogo: Tamthilia ya Kiswahili",
        "arts-theatre",
        "Nairobi",
        "Kenya National Theatre",
        "Pauline Kea's Kigogo staged in Swahili by a Nairobi company: a political drama about "
        "Sagamoyo and Majoka. Matinee for schools, evening shows for everyone.",
        ("theatre", "kiswahili", "drama"),
        9,
        18,
        3,
        500,
        1000,
        2500,
        450,
    ),
    CuratedEvent(
        "Churchill Show Live Recording",
        "comedy",
        "Nairobi",
        "Kenyatta International Convention Centre (KICC)",
        "Stand-up comedy from Kenya's best-known comedy stage, recorded live with new and "
        "returning comedians. Cheka mpaka basi!",
        ("stand-up", "comedy", "tv recording"),
        6,
        19,
        3,
        1000,
        1500,
        5000,
        1200,
    ),
    CuratedEvent(
        "Mombasa Carnival",
        "festivals",
        "Mombasa",
        "Moi Avenue & Mombasa Golf Club",
        "A parade of floats down Moi Avenue past the tusks, then taarab, chakacha and "
        "Swahili food into the night at Mombasa Golf Club.",
        ("carnival", "taarab", "swahili culture"),
        60,
        14,
        10,
        500,
        1000,
        3500,
        8000,
    ),
    CuratedEvent(
        "Diani Beach Sundowner Festival",
        "nightlife",
        "Diani",
        "Diani Reef Beach Resort",
        "Amapiano, afro-house and bongo flava DJs on the sand from sunset to sunrise, on the "
        "south coast's favourite beach.",
        ("amapiano", "beach", "dj"),
        25,
        17,
        10,
        2500,
        3500,
        9000,
        1500,
    ),
    CuratedEvent(
        "Kisumu Lakeside Food Festival",
        "food-drink",
        "Kisumu",
        "Kisumu Impala Park",
        "Fish from Lake Victoria, nyama choma and ugali, Luo benga on the main stage and a "
        "sunset over the lake. Watoto wanakaribishwa.",
        ("food", "benga", "lake victoria"),
        21,
        12,
        8,
        0,
        500,
        2000,
        2500,
    ),
    CuratedEvent(
        "Nakuru Tech & Agribusiness Summit",
        "conferences",
        "Nakuru",
        "Nakuru Athletic Club",
        "Two days of talks and workshops on precision farming, mobile money for cooperatives "
        "and value chains in the Rift Valley.",
        ("agritech", "fintech", "networking"),
        40,
        9,
        9,
        2500,
        4000,
        12000,
        600,
    ),
    CuratedEvent(
        "Eldoret City Marathon",
        "sports",
        "Eldoret",
        "Kipchoge Keino Stadium",
        "Run with champions in the Home of Champions: 42 km, 21 km and a 10 km fun run "
        "through Eldoret, finishing at Kipchoge Keino Stadium.",
        ("marathon", "running", "athletics"),
        50,
        6,
        6,
        1500,
        2000,
        5000,
        5000,
    ),
    CuratedEvent(
        "Naivasha Family Fun Day",
        "family",
        "Naivasha",
        "Crescent Island Game Sanctuary",
        "A walking safari among giraffes and zebras, boat rides on Lake Naivasha, face "
        "painting and a bouncy castle for the kids.",
        ("kids", "safari walk", "boat ride"),
        14,
        9,
        8,
        0,
        1200,
        3000,
        800,
    ),
)

# -- the bulk generator's vocabulary --------------------------------------------------------

VENUES: dict[str, tuple[str, ...]] = {
    "Nairobi": (
        "Kenyatta International Convention Centre (KICC)",
        "Carnivore Grounds",
        "Nyayo National Stadium",
        "Moi International Sports Centre Kasarani",
        "Ngong Racecourse",
        "Kenya National Theatre",
        "Alliance Française de Nairobi",
        "Bomas of Kenya",
        "Uhuru Gardens",
        "Sarit Expo Centre",
        "The Alchemist Bar",
        "Nairobi Arboretum",
        "Karura Forest",
        "Two Rivers Mall",
    ),
    "Mombasa": (
        "Mombasa Golf Club",
        "Fort Jesus",
        "Mombasa Sports Club",
        "Nyali Beach",
        "Haller Park",
        "Mama Ngina Waterfront",
    ),
    "Kisumu": (
        "Kisumu Impala Park",
        "Jomo Kenyatta Sports Ground",
        "Dunga Beach",
        "Kisumu Museum",
        "Acacia Premier Hotel",
    ),
    "Nakuru": ("Nakuru Athletic Club", "Afraha Stadium", "Menengai Crater", "Nakuru Showground"),
    "Eldoret": ("Kipchoge Keino Stadium", "Eldoret Sports Club", "Rupa's Mall Grounds"),
    "Naivasha": ("Crescent Island Game Sanctuary", "Enashipai Resort", "Fisherman's Camp"),
    "Diani": ("Diani Reef Beach Resort", "Leopard Beach Resort", "Kinondo Kwetu"),
    "Malindi": ("Malindi Sports Ground", "Marine Park Beach"),
    "Lamu": ("Shela Beach", "Lamu Fort"),
    "Nanyuki": ("Nanyuki Sports Club", "Ol Pejeta Conservancy"),
    "Thika": ("Thika Stadium", "Blue Post Hotel"),
    "Kilifi": ("Distant Relatives Ecolodge", "Kilifi Creek"),
}
# Nairobi is where most events are; the weights give a realistic skew.
CITY_WEIGHTS = {
    "Nairobi": 40,
    "Mombasa": 14,
    "Kisumu": 9,
    "Nakuru": 8,
    "Eldoret": 6,
    "Naivasha": 5,
    "Diani": 5,
    "Malindi": 3,
    "Lamu": 2,
    "Nanyuki": 3,
    "Thika": 3,
    "Kilifi": 2,
}

TITLES: dict[str, tuple[str, ...]] = {
    "music": (
        "{city} Jazz Festival",
        "Sauti za {city}",
        "Benga Night",
        "Gengetone Live",
        "Afro-Fusion Sessions",
        "Taarab Jioni",
        "Rhumba Classics Night",
        "Muziki wa Pwani",
        "Acoustic Sunday",
        "Reggae on the Lawn",
        "Fête de la Musique",
    ),
    "sports": (
        "{city} Half Marathon",
        "Harambee Stars vs Uganda Cranes",
        "Mashemeji Derby",
        "Safari Sevens Qualifier",
        "{city} Golf Open",
        "Basketball Showdown",
        "Cycling Tour of {city}",
        "Volleyball Beach Cup",
    ),
    "arts-theatre": (
        "Kigogo Stage Play",
        "Shakespeare in the Park",
        "Spoken Word Poetry Slam",
        "Sarakasi Acrobatics",
        "Contemporary Art Exhibition",
        "Tamthilia ya Jioni",
        "Photography Expo",
    ),
    "comedy": (
        "Churchill Show Live",
        "Cheka Cheka Comedy Night",
        "Stand-up Jumanne",
        "Comedy Kitchen",
        "Laugh Festival {city}",
    ),
    "festivals": (
        "Lamu Cultural Festival",
        "{city} Carnival",
        "Rusinga Island Festival",
        "Maa Cultural Festival",
        "Koroga Festival",
        "Tamasha la Utamaduni",
    ),
    "conferences": (
        "{city} Tech Summit",
        "Fintech Forum East Africa",
        "Agritech Expo",
        "DevFest {city}",
        "Women in Business Breakfast",
        "Climate Action Conference",
    ),
    "nightlife": (
        "Amapiano Night",
        "Friday Vibes",
        "Rooftop Sundowner",
        "Silent Disco",
        "Reggae Sunday",
        "Usiku wa Burudani",
    ),
    "family": (
        "Family Fun Day",
        "Kids' Safari Walk",
        "Easter Funfair",
        "Bomas Cultural Show",
        "Puppet Theatre for Kids",
    ),
    "food-drink": (
        "Nyama Choma Festival",
        "Street Food Fest",
        "Wine & Cheese Soirée",
        "Coffee Cupping Morning",
        "Swahili Dishes Cooking Class",
    ),
    "religious": ("Gospel Explosion", "Praise & Worship Night", "Sifa Concert"),
    "workshops": (
        "Photography Masterclass",
        "Python for Beginners Workshop",
        "Pottery Class",
        "Beadwork Workshop",
        "Public Speaking Bootcamp",
    ),
    "charity": (
        "Charity Fun Run",
        "Fundraising Gala Dinner",
        "Tree Planting Harambee",
        "Beyond Zero Walk",
    ),
}
CATEGORY_WEIGHTS = {
    "music": 22,
    "sports": 12,
    "arts-theatre": 8,
    "comedy": 7,
    "festivals": 6,
    "conferences": 8,
    "nightlife": 13,
    "family": 6,
    "food-drink": 7,
    "religious": 4,
    "workshops": 5,
    "charity": 2,
}
TAGS: dict[str, tuple[str, ...]] = {
    "music": ("live music", "jazz", "benga", "gengetone", "afrobeats", "rhumba", "taarab", "dj"),
    "sports": ("football", "rugby", "athletics", "running", "golf", "basketball", "cycling"),
    "arts-theatre": ("theatre", "drama", "poetry", "kiswahili", "art", "exhibition"),
    "comedy": ("stand-up", "comedy", "improv"),
    "festivals": ("culture", "carnival", "outdoor", "swahili culture", "food"),
    "conferences": ("tech", "fintech", "agritech", "networking", "startups", "climate"),
    "nightlife": ("amapiano", "dj", "club", "rooftop", "reggae", "afro-house"),
    "family": ("kids", "family", "outdoor", "picnic"),
    "food-drink": ("food", "nyama choma", "wine", "coffee", "cooking"),
    "religious": ("gospel", "worship", "choir"),
    "workshops": ("workshop", "learning", "photography", "coding", "crafts"),
    "charity": ("charity", "fundraiser", "community", "environment"),
}
GENERAL_TAGS = ("weekend", "outdoor", "indoor", "18+", "family friendly", "vip lounge")
OPENERS = (
    "Karibu to {title} at {venue}.",
    "{title} returns to {city} with its biggest line-up yet.",
    "Join us at {venue} for {title}.",
    "Don't miss {title}, one of {city}'s favourite evenings out.",
    "Tamasha kubwa: {title} comes to {venue}, {city}.",
)
MIDDLES = (
    "Expect great food, cold drinks and a crowd that knows how to have a good time.",
    "Gates open two hours early; parking is limited, so take a matatu or a cab.",
    "Local artists, vendors and performers from across Kenya share one stage.",
    "Tickets are limited and usually sell out before the day: book early.",
    "M-Pesa payments at the gate are accepted, but tickets bought online are cheaper.",
    "Bring a jacket: evenings get chilly after sunset.",
    "Hakuna matata: security, first aid and clean washrooms on site.",
    "Watoto chini ya miaka 5 wanaingia bure with a paying adult.",
)
CLOSERS = ("See you there!", "Tuonane huko!", "Karibuni wote.", "Pamoja tunaweza.", "")


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _title(rng: random.Random, category: str, city: str) -> str:
    return rng.choice(TITLES[category]).format(city=city)


def _tiers(rng: random.Random, starts_at: datetime, now: datetime) -> list[dict[str, Any]]:
    """1 to 3 tiers; about one event in ten is free. Early Bird sales close before the event."""
    if rng.random() < 0.1:
        quantity = rng.choice((100, 200, 500, 1000))
        return [{"name": "Free Entry", "price": 0, "quantity": quantity, "sales_end": None}]
    regular = rng.choice((300, 500, 800, 1000, 1500, 2000, 2500, 3000, 3500, 5000, 7500))
    tiers = [{"name": "Regular", "price": regular, "quantity": rng.choice((100, 300, 500, 2000))}]
    count = rng.choice((1, 2, 2, 3, 3, 3))
    if count >= 2:
        vip = min(15_000, regular * rng.choice((2, 3, 4)))
        tiers.append({"name": "VIP", "price": vip, "quantity": rng.choice((20, 50, 100))})
    if count == 3:
        early_end = starts_at - timedelta(days=rng.choice((3, 7, 14, 30)))
        tiers.append(
            {
                "name": "Early Bird",
                "price": max(0, regular - rng.choice((200, 300, 500))),
                "quantity": rng.choice((50, 100, 200)),
                "sales_end": early_end if early_end > now else None,
            }
        )
    for tier in tiers:
        tier.setdefault("sales_end", None)
    return tiers


async def _category_ids(session: AsyncSession) -> dict[str, uuid.UUID]:
    rows = await session.execute(select(Category.slug, Category.id))
    return {row.slug: row.id for row in rows}


def _unnest_insert(table: Table, columns: tuple[str, ...]) -> Insert:
    """`INSERT INTO table (cols) SELECT * FROM unnest(:col1, :col2, ...)`: one statement per
    batch whatever its size, with one array parameter per column. Unlike one INSERT per row
    (executemany), the generated search vector's SQL function is planned once per batch, and
    unlike a multi-row VALUES the statement compiles once and is reused."""
    arrays = []
    for name in columns:
        column = table.c[name]
        if name == "tags":  # varchar[] per row: sent as one string, split back in SQL
            arrays.append(bindparam(name, type_=ARRAY(Text)))
        else:
            arrays.append(bindparam(name, type_=ARRAY(column.type)))
    rows = func.unnest(*arrays).table_valued(*columns).render_derived()
    values = [
        func.string_to_array(rows.c[name], TAG_SEPARATOR).cast(table.c[name].type)
        if name == "tags"
        else rows.c[name]
        for name in columns
    ]
    return insert(table).from_select(list(columns), select(*values))


TAG_SEPARATOR = "\x1f"  # the ASCII unit separator: never inside a tag
_EVENT_COLUMNS = (
    "id",
    "organizer_id",
    "category_id",
    "title",
    "description",
    "tags",
    "venue",
    "city",
    "starts_at",
    "ends_at",
    "timezone",
    "status",
    "published_at",
)
_TIER_COLUMNS = (
    "id",
    "event_id",
    "name",
    "price",
    "quantity",
    "sold",
    "held",
    "sales_end",
    "max_per_order",
    "sort_order",
)
_EVENTS_INSERT = _unnest_insert(Event.__table__, _EVENT_COLUMNS)  # type: ignore[arg-type]
_TIERS_INSERT = _unnest_insert(TicketType.__table__, _TIER_COLUMNS)  # type: ignore[arg-type]


@dataclass
class _Batch:
    """Column arrays of one batch, ready for the unnest INSERTs."""

    events: dict[str, list[Any]]
    tiers: dict[str, list[Any]]


def _build_batch(
    rng: random.Random,
    size: int,
    *,
    organizer_id: uuid.UUID,
    categories: dict[str, uuid.UUID],
    now: datetime,
) -> _Batch:
    events: dict[str, list[Any]] = {name: [] for name in _EVENT_COLUMNS}
    tiers: dict[str, list[Any]] = {name: [] for name in _TIER_COLUMNS}
    weights = {slug: CATEGORY_WEIGHTS[slug] for slug in categories}
    for _ in range(size):
        category = _weighted(rng, weights)
        city = _weighted(rng, CITY_WEIGHTS)
        venue = rng.choice(VENUES[city])
        title = _title(rng, category, city)
        # Mostly evenings (East Africa Time, UTC+3), on the hour or half-hour, over a year.
        day = now + timedelta(days=rng.randint(1, 365))
        hour = rng.choice((9, 10, 14, 17, 18, 19, 19, 20, 21))
        starts_at = day.replace(
            hour=(hour - 3) % 24, minute=rng.choice((0, 30)), second=0, microsecond=0
        )
        tags = list(
            dict.fromkeys(
                rng.sample(TAGS[category], k=2)
                + ([rng.choice(GENERAL_TAGS)] if rng.random() < 0.5 else [])
            )
        )
        fill = {"title": title, "venue": venue, "city": city}
        sentences = (
            rng.choice(OPENERS).format(**fill),
            *rng.sample(MIDDLES, k=rng.randint(1, 3)),
            rng.choice(CLOSERS),
        )
        event_id = uuid.uuid4()
        row = {
            "id": event_id,
            "organizer_id": organizer_id,
            "category_id": categories[category],
            "title": title,
            "description": " ".join(part for part in sentences if part),
            "tags": TAG_SEPARATOR.join(tags),
            "venue": venue,
            "city": city,
            "starts_at": starts_at,
            "ends_at": starts_at + timedelta(hours=rng.choice((2, 3, 4, 5, 8, 24, 48))),
            "timezone": NAIROBI,
            "status": EventStatus.published.value,
            "published_at": now,
        }
        for name, value in row.items():
            events[name].append(value)
        for order, tier in enumerate(_tiers(rng, starts_at, now)):
            tier_row = {
                "id": uuid.uuid4(),
                "event_id": event_id,
                "name": tier["name"],
                "price": tier["price"],
                "quantity": tier["quantity"],
                "sold": rng.randint(0, tier["quantity"] // 3),
                "held": 0,
                "sales_end": tier["sales_end"],
                "max_per_order": 10,
                "sort_order": order,
            }
            for name, value in tier_row.items():
                tiers[name].append(value)
    return _Batch(events=events, tiers=tiers)


async def generate_events(
    session: AsyncSession,
    organizer_id: uuid.UUID,
    count: int,
    *,
    seed: int = 2026,
    batch_size: int = 2_000,
) -> int:
    """Insert `count` published events (with 1-3 tiers each) owned by `organizer_id`.

    Two set-based INSERTs per batch (see `_unnest_insert`), and the next batch is built in a
    thread while the database writes the previous one, so 100,000 events take well under a
    minute. The same `seed` gives the same titles, places, dates and prices (ids are random,
    so generating twice adds a second set). Only flushes: the caller owns the transaction.
    """
    if count <= 0:
        return 0
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    now = datetime.now(UTC)
    categories = {
        slug: category_id
        for slug, category_id in (await _category_ids(session)).items()
        if slug in TITLES
    }

    def build(size: int) -> _Batch:
        return _build_batch(rng, size, organizer_id=organizer_id, categories=categories, now=now)

    sizes = [min(batch_size, count - start) for start in range(0, count, batch_size)]
    batch = build(sizes[0])
    for index in range(len(sizes)):
        following = (
            asyncio.create_task(asyncio.to_thread(build, sizes[index + 1]))
            if index + 1 < len(sizes)
            else None
        )
        await session.execute(_EVENTS_INSERT, batch.events)
        await session.execute(_TIERS_INSERT, batch.tiers)
        if following is not None:
            batch = await following
    return count


async def _seed_curated(session: AsyncSession, organizer: Any) -> int:
    existing = set(
        (await session.execute(select(Event.title).where(Event.organizer_id == organizer.id)))
        .scalars()
        .all()
    )
    service = EventService(session)
    now = datetime.now(UTC)
    created = 0
    for item in CURATED_EVENTS:
        if item.title in existing:
            continue
        day = (now + timedelta(days=item.days_ahead)).replace(minute=0, second=0, microsecond=0)
        starts_at = day.replace(hour=(item.hour - 3) % 24)  # the hour is East Africa Time
        event = await service.create(
            organizer,
            EventCreate(
                title=item.title,
                description=item.description,
                category=item.category,
                tags=list(item.tags),
                venue=item.venue,
                city=item.city,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(hours=item.hours),
                timezone=NAIROBI,
            ),
        )
        early_end = starts_at - timedelta(days=7)
        tiers = (
            TicketTypeCreate(
                name="Early Bird",
                price=item.early_bird,
                quantity=max(1, item.capacity // 5),
                sales_end=early_end if early_end > now else None,
            ),
            TicketTypeCreate(name="Regular", price=item.regular, quantity=item.capacity),
            TicketTypeCreate(
                name="VIP", price=item.vip, quantity=max(1, item.capacity // 20), max_per_order=4
            ),
        )
        for tier in tiers:
            await service.add_ticket_type(event, tier)
        await service.publish(event)
        created += 1
    return created


async def seed_demo_events(
    session: AsyncSession, *, organizer_email: str, generate: int = 0, seed: int = 2026
) -> int:
    """The curated events (skipping titles the organizer already has), then `generate` more.

    Returns how many events were created. Raises `LookupError` when the organizer account does
    not exist (seed the demo users first). Only flushes: the caller owns the transaction.
    """
    organizer = await UserRepository(session).get_by_email(organizer_email)
    if organizer is None:
        raise LookupError(f"no account {organizer_email!r}: seed the demo users first")
    created = await _seed_curated(session, organizer)
    created += await generate_events(session, organizer.id, generate, seed=seed)
    return created
