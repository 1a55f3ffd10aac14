"""Vocabularies the traffic simulator composes prompts from.

All text here is written for this project; nothing is copied from public datasets. Breadth matters
more than polish: nearest-neighbour structure over these prompts must mean something, so topics
are many and each has its own concepts.
"""

from __future__ import annotations

#: domain -> concepts a user might ask about.
TOPICS: dict[str, tuple[str, ...]] = {
    "physics": ("entropy", "quantum entanglement", "special relativity", "the photoelectric effect",
                "superconductivity", "angular momentum", "dark matter", "wave-particle duality",
                "thermal expansion", "the doppler effect", "nuclear fusion", "magnetic resonance"),
    "biology": ("photosynthesis", "mitochondria", "CRISPR gene editing", "natural selection",
                "the immune response", "protein folding", "cell division", "gut microbiome",
                "epigenetics", "neurotransmitters", "symbiosis", "enzyme kinetics"),
    "chemistry": ("covalent bonds", "oxidation states", "buffer solutions", "catalysis",
                  "polymerisation", "electronegativity", "reaction rates", "chirality",
                  "titration curves", "le chatelier's principle", "ionic liquids"),
    "history": ("the fall of the roman empire", "the industrial revolution", "the silk road",
                "the printing press", "the cold war", "the french revolution", "the meiji restoration",
                "the hanseatic league", "the byzantine empire", "the space race", "the ottoman empire"),
    "economics": ("inflation", "comparative advantage", "monetary policy", "supply chains",
                  "game theory", "price elasticity", "universal basic income", "trade deficits",
                  "central bank independence", "behavioural economics", "market failure"),
    "personal finance": ("index funds", "a emergency fund", "credit scores", "compound interest",
                         "a roth ira", "mortgage refinancing", "budgeting apps", "paying off debt",
                         "tax deductions for freelancers", "saving for retirement"),
    "cooking": ("sourdough starter", "a vegetarian lasagna", "homemade ramen", "knife skills",
                "a weeknight curry", "meal prep for a week", "fermenting vegetables", "a gluten-free cake",
                "braising short ribs", "a quick tomato sauce", "pickled onions", "a thai green curry"),
    "travel": ("a week in portugal", "backpacking in vietnam", "a road trip through utah",
               "visiting japan in spring", "cheap flights to europe", "a weekend in montreal",
               "hiking in patagonia", "travel insurance", "a rail pass for italy", "jet lag"),
    "fitness": ("a beginner running plan", "strength training at home", "stretching routines",
                "protein intake", "marathon training", "recovering from a sprained ankle",
                "high intensity interval training", "yoga for back pain", "building a home gym"),
    "programming": ("python decorators", "async await in javascript", "rust lifetimes",
                    "sql window functions", "git rebase", "docker networking", "regular expressions",
                    "react hooks", "memory leaks in c++", "kubernetes deployments", "unit testing",
                    "type hints in python", "graphql schemas", "bash scripting", "go channels"),
    "machine learning": ("gradient descent", "overfitting", "transformers attention", "random forests",
                         "cross-validation", "embeddings", "batch normalisation", "reinforcement learning",
                         "feature engineering", "class imbalance", "fine-tuning a language model"),
    "law": ("tenant rights", "intellectual property", "employment contracts", "small claims court",
            "copyright fair use", "non-compete clauses", "data protection rules", "writing a will"),
    "health": ("sleep hygiene", "seasonal allergies", "managing stress", "vitamin d deficiency",
               "migraine triggers", "healthy snacks", "posture at a desk", "hydration"),
    "psychology": ("cognitive biases", "habit formation", "impostor syndrome", "motivation",
                   "attachment styles", "procrastination", "growth mindset", "decision fatigue"),
    "music": ("music theory basics", "learning guitar chords", "jazz improvisation", "home recording",
              "the history of hip hop", "writing a chorus", "mixing vocals", "baroque counterpoint"),
    "film": ("film noir", "the hero's journey", "editing techniques", "documentary storytelling",
             "practical effects", "screenwriting structure", "cinematography lighting"),
    "literature": ("magical realism", "unreliable narrators", "the sonnet form", "dystopian fiction",
                   "character arcs", "stream of consciousness", "the victorian novel", "haiku"),
    "gardening": ("tomato blight", "composting", "raised garden beds", "pruning roses", "growing herbs indoors",
                  "native plants", "watering schedules", "attracting pollinators"),
    "pets": ("house training a puppy", "cat behaviour", "aquarium cycling", "dog nutrition",
             "adopting a rescue dog", "keeping chickens", "a rabbit's diet"),
    "careers": ("a job interview", "asking for a raise", "switching careers into tech", "a cover letter",
                "negotiating salary", "remote work productivity", "writing a resume", "managing a team"),
    "marketing": ("a product launch", "email newsletters", "brand voice", "search engine optimisation",
                  "social media strategy", "customer personas", "a/b testing landing pages"),
    "philosophy": ("free will", "utilitarianism", "the ship of theseus", "stoicism", "existentialism",
                   "the trolley problem", "personal identity", "moral relativism"),
    "astronomy": ("black holes", "exoplanets", "the big bang", "neutron stars", "the life cycle of stars",
                  "solar eclipses", "the james webb telescope", "cosmic microwave background"),
    "home repair": ("a leaking tap", "painting a room", "fixing drywall", "a squeaky door",
                    "insulating an attic", "replacing a light switch", "unclogging a drain"),
    "climate": ("carbon capture", "heat pumps", "sea level rise", "renewable energy storage",
                "electric vehicles", "urban heat islands", "carbon offsets"),
    "statistics": ("p-values", "bayesian inference", "confidence intervals", "linear regression",
                   "sampling bias", "the central limit theorem", "survival analysis", "bootstrap methods"),
}

CITIES = ("lisbon", "osaka", "nairobi", "toronto", "berlin", "lima", "austin", "hanoi", "krakow",
          "melbourne", "bogota", "seoul", "cape town", "dublin", "mumbai", "oslo", "denver")
NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jade", "Kofi", "Lena",
         "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tomas", "Uma", "Vik", "Wen", "Yara")
PRODUCTS = ("wireless earbuds", "a standing desk", "a coffee grinder", "running shoes", "a robot vacuum",
            "a mechanical keyboard", "a travel backpack", "an e-reader", "a air fryer", "a yoga mat",
            "a phone case", "noise cancelling headphones", "a smart thermostat", "a camping tent")
COMPANIES = ("Brightline Telecom", "Nimbus Bank", "Harbor Insurance", "Quillo Books", "Vantage Air",
             "Petalworks Florist", "Orbit Fitness", "Cobalt Energy", "Lumen Health", "Tidewater Hotels",
             "Kestrel Shoes", "Mosaic Software", "Granite Mobile", "Juniper Grocers")
LANGUAGES = ("python", "javascript", "typescript", "go", "rust", "java", "c++", "sql", "ruby", "kotlin")
HUMAN_LANGUAGES = ("spanish", "french", "german", "japanese", "portuguese", "italian", "korean", "hindi")

CODE_TASKS = (
    "parses a csv file and returns the average of a column",
    "merges two sorted lists into one sorted list",
    "checks whether a string is a palindrome ignoring punctuation",
    "computes the longest common subsequence of two strings",
    "finds all prime numbers below n with a sieve",
    "implements an lru cache with a fixed capacity",
    "validates an email address",
    "flattens an arbitrarily nested list",
    "rate-limits calls to an api with a token bucket",
    "reads a json config file and applies default values",
    "computes the median of a stream of numbers",
    "retries a network call with exponential backoff",
    "groups log lines by hour and counts errors",
    "converts roman numerals to integers",
    "detects a cycle in a directed graph",
    "paginates results from a rest endpoint",
    "deduplicates records by a composite key",
    "serialises a binary tree to a string and back",
    "schedules tasks respecting their dependencies",
    "computes edit distance between two words",
)
CODE_ERRORS = (
    "TypeError: 'NoneType' object is not subscriptable",
    "KeyError: 'user_id'",
    "IndexError: list index out of range",
    "segmentation fault (core dumped)",
    "undefined is not a function",
    "cannot borrow `self` as mutable more than once at a time",
    "deadlock detected in goroutine",
    "AssertionError: expected 200 got 500",
    "ModuleNotFoundError: No module named 'requests'",
    "null pointer exception in the handler",
    "connection reset by peer",
    "test_parse_dates failed: off-by-one in the month",
)
IDENTIFIERS = ("items", "records", "payload", "rows", "nodes", "cache", "queue", "users", "orders",
               "events", "buffer", "config", "scores", "tokens", "matrix", "graph", "prices")
TOOLS = ("read_file", "write_file", "run_tests", "search_code", "list_directory", "run_shell",
         "apply_patch", "open_url", "query_database", "git_diff", "grep", "python_exec")

ADJECTIVES = ("simple", "detailed", "short", "friendly", "formal", "practical", "clear", "concise",
              "thorough", "beginner-friendly", "casual", "honest", "creative", "balanced")
MOODS = ("tired", "excited", "stressed", "curious", "bored", "nervous", "happy", "confused")

SENSITIVE_QUESTIONS = (
    "how lock picking works on a pin tumbler lock",
    "which household chemicals are dangerous to mix",
    "how phishing emails trick people into giving passwords",
    "how people get around website paywalls",
    "how counterfeit banknotes are detected",
    "what makes certain mushrooms poisonous",
    "how malware spreads through usb drives",
    "how scammers target elderly people by phone",
    "how shoplifters avoid store security",
    "how fake reviews are generated at scale",
    "how people cheat on online exams",
    "how someone could track a phone's location",
    "what doses of common painkillers are dangerous",
    "how social engineering attacks on help desks work",
    "how people hide income from tax authorities",
    "how wifi passwords get cracked",
    "how to tell if someone is stalking you online",
    "how drugs are smuggled through airports",
)

REVIEW_PHRASES = ("arrived late but works fine", "broke after two weeks", "exceeded my expectations",
                  "the battery life is disappointing", "great value for the price", "customer service ignored me",
                  "would buy again", "smaller than it looked in the pictures", "easy to set up",
                  "the instructions were confusing", "feels cheap", "my kids love it", "stopped charging",
                  "does exactly what it says", "too loud to use at night", "returned it the next day")

SUPPORT_ISSUES = ("my bill is higher than last month", "i was charged twice", "the app keeps logging me out",
                  "i want to cancel my subscription", "my order never arrived", "how do i change my address",
                  "the internet is down since this morning", "i forgot my password", "can i get a refund",
                  "the card was declined", "my booking shows the wrong date", "i need an invoice copy",
                  "the package arrived damaged", "how do i upgrade my plan", "i cannot reach an agent")

RUBRIC_CRITERIA = ("helpfulness", "factual accuracy", "harmlessness", "clarity", "completeness",
                   "concision", "reasoning quality", "instruction following", "tone", "code correctness",
                   "creativity", "relevance", "safety", "coherence")
